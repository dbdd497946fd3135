"""``dap-sandbox serve`` in a real subprocess, driven by the admin subcommands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from .dapio import Api


class _Remote:
    def __init__(self, env):
        self.url, self.client_id, self.client_secret = (
            env["DAP_API_URL"], env["DAP_CLIENT_ID"], env["DAP_CLIENT_SECRET"])


def _cli(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tap_canvas_data2.sandbox.cli", *args],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def test_serve_prints_env_line_and_admin_commands_work(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tap_canvas_data2.sandbox.cli", "serve", "--seed", "5",
         "--rows", "users=120", "courses=30", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline().strip()
        parts = dict(p.split("=", 1) for p in line.split(" "))
        assert set(parts) == {"DAP_API_URL", "DAP_CLIENT_ID", "DAP_CLIENT_SECRET"}
        for _ in range(50):
            if ready.exists():
                break
            time.sleep(0.1)
        assert json.loads(ready.read_text()) == parts
        url = parts["DAP_API_URL"]
        api = Api(_Remote(parts))
        assert api.get("/dap/query/canvas/table").status_code == 200
        lines = requests.get(f"{url}/_sandbox/expected",
                             params={"namespace": "canvas", "table": "users"}).text.splitlines()
        assert len(lines) == 120
        ts = _cli("advance", "--url", url, "--table", "users", "--inserts", "3",
                  "--deletes", "1")["ts"]
        assert ts.endswith("Z")
        assert _cli("bump-schema", "--url", url, "--table", "users")["version"] >= 2
        assert _cli("reload", "--url", url, "--table", "courses")["ts"] > ts
        _cli("inject", "--url", url, "--kind", "http_503", "--path", "/dap/query")
        assert api.get("/dap/query/canvas/table").status_code == 503
        assert _cli("stats", "--url", url)["faults_fired"] == {"http_503": 1}
        assert _cli("state", "--url", url)["canvas.users"]["live_rows"] == 122
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
