"""DAP API client (Instructure Canvas Data 2): no singer-sdk imports here.

``DAPClient`` (client.py) runs queries and downloads objects; ``ObjectParser`` (objects.py)
turns decompressed objects into ``(action, ts, row)`` records; errors.py has the typed errors.
"""

from .client import CompletedJob, DAPClient, format_timestamp, parse_timestamp
from .errors import DAPError, redact_url
from .objects import ObjectParser, Record, TableLayout

__all__ = ["DAPClient", "CompletedJob", "ObjectParser", "TableLayout", "Record", "DAPError",
           "redact_url", "parse_timestamp", "format_timestamp"]
