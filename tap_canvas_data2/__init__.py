"""tap-canvas-data2: Canvas Data 2 (DAP API) Singer tap, API client and sandbox."""
