"""A simulated Instructure DAP (Canvas Data 2) API on 127.0.0.1, for tests and benchmarks.

```python
from tap_canvas_data2.sandbox import Sandbox
with Sandbox(seed=7, rows={"submissions": 2000}) as sb:
    sb.url, sb.client_id, sb.client_secret
    sb.advance("canvas", "users", inserts=5, updates=7, deletes=3)
    sb.expected_rows("canvas", "users")
```

See docs/architecture.md ("Sandbox") for the contract; ``faults.py`` for fault kinds;
``server.py`` for the ``/_sandbox/...`` admin endpoints (the same operations over HTTP).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .faults import KINDS as FAULT_KINDS
from .server import DapServer, serve_in_thread
from .service import SandboxService

__all__ = ["Sandbox", "FAULT_KINDS"]

DEFAULT_CLIENT_ID = "us-east-1#sandbox-client"  # region#id, the form the official client parses
DEFAULT_CLIENT_SECRET = "sandbox-secret"


class Sandbox:
    """A DAP API server in a background thread plus the controls tests need. Thread-safe.

    Keyword arguments:
        seed: makes every value, id choice and object byte reproducible.
        rows: initial rows per table, e.g. ``{"submissions": 1_000_000}`` (``canvas`` tables by
            bare name, others as ``"<ns>.<table>"``); the defaults are small.
        rows_per_object: split results into objects of at most this many rows.
        job_polls: a new job is ``waiting``/``running`` for this many ``GET /dap/job`` polls.
        data_dir: where objects are written (default: a temp dir removed on ``stop``).
        host, port: bind address (port 0 = a free port).
        client_id, client_secret: the credentials ``/ids/auth/login`` accepts.
        rate_limit: ``(jobs, seconds)`` per client for job creation (429 beyond), or None.
        retention: seconds of data-clock history kept for incrementals (None = unlimited).
        token_ttl, job_ttl, url_ttl: lifetimes (s) of tokens, jobs and pre-signed URLs.
    """

    def __init__(self, *, seed: int = 7, rows: dict[str, int] | None = None,
                 rows_per_object: int = 100_000, job_polls: int = 0,
                 data_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 client_id: str = DEFAULT_CLIENT_ID, client_secret: str = DEFAULT_CLIENT_SECRET,
                 rate_limit: tuple[int, float] | None = None, retention: float | None = None,
                 token_ttl: int = 3600, job_ttl: float = 24 * 3600, url_ttl: int = 900,
                 **service_options: Any):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="dap-sandbox-"))
        self.host, self.port = host, port
        self.service = SandboxService(
            seed=seed, rows=rows, rows_per_object=rows_per_object, job_polls=job_polls,
            data_dir=self.data_dir, client_id=client_id, client_secret=client_secret,
            rate_limit=rate_limit, retention=retention, token_ttl=token_ttl, job_ttl=job_ttl,
            url_ttl=url_ttl, **service_options)
        self._server: DapServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._server is None:
            self._server, self._thread = serve_in_thread(self.service, self.host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.service.close()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- connection details -----------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL of the API (``DAP_API_URL``), e.g. ``http://127.0.0.1:41234``."""
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return self._server.base_url

    @property
    def client_id(self) -> str:
        return self.service.client_id

    @property
    def client_secret(self) -> str:
        return self.service.client_secret

    def env(self) -> dict[str, str]:
        """Environment variables the ``dap`` CLI (and our tap) read."""
        return {"DAP_API_URL": self.url, "DAP_CLIENT_ID": self.client_id,
                "DAP_CLIENT_SECRET": self.client_secret}

    # --- data -------------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return self.service.catalog.namespaces()

    def tables(self, namespace: str = "canvas") -> list[str]:
        return self.service.list_tables(namespace)

    def schema(self, namespace: str, table: str) -> dict[str, Any]:
        """``{"schema": ..., "version": ...}`` exactly as the API serves it."""
        return self.service.schema(namespace, table)

    def advance(self, namespace: str, table: str, inserts: int = 0, updates: int = 0,
                deletes: int = 0, *, update_ids: list[int] | None = None,
                delete_ids: list[int] | None = None) -> str:
        """Commit changes (random live rows unless ids are given); return the commit ts."""
        return self.service.advance(namespace, table, inserts, updates, deletes, update_ids,
                                    delete_ids)

    def bump_schema(self, namespace: str, table: str, column: str | None = None,
                    type: str = "varchar(255)") -> int:  # noqa: A002 - mirrors the JSON key
        """Add a nullable column (new schema version, returned). Rows written afterwards carry
        values in it; older rows have NULL (DAP does not back-fill)."""
        return self.service.bump_schema(namespace, table, column, type)

    def reload(self, namespace: str, table: str) -> str:
        """Simulate a DAP table reload: incrementals with since before it -> SnapshotRequired."""
        return self.service.reload(namespace, table)

    def expire_history(self, namespace: str, table: str, before: str | None = None) -> str:
        """Move the retention horizon (default: the latest commit): incrementals with an older
        since -> OutOfRangeError. Returns the horizon."""
        return self.service.expire_history(namespace, table, before)

    def latest(self, namespace: str, table: str) -> str:
        """The table's latest commit time (a snapshot's ``at``)."""
        return self.service.state()[f"{namespace}.{table}"]["latest"]

    def expected_rows(self, namespace: str, table: str) -> Iterator[dict[str, Any]]:
        """The current rows, ordered by key, in the form of a condensed JSONL snapshot."""
        return self.service.expected_rows(namespace, table)

    def pregenerate(self, namespace: str, table: str, format: str = "tsv",  # noqa: A002
                    mode: str = "condensed") -> int:
        """Generate the current snapshot's objects now; returns the object count."""
        return self.service.pregenerate(namespace, table, format, mode)

    # --- faults and observation -------------------------------------------------------------
    def inject(self, kind: str, *, count: int = 1, path: str | None = None,
               retry_after: int = 1, type: str | None = None) -> None:  # noqa: A002
        """Arm a fault (see ``faults.py`` for kinds; ``type`` is the DAP error type of
        ``http_403``)."""
        self.service.inject(kind, count, path, retry_after, type)

    def issued_secrets(self) -> dict[str, list[str]]:
        """Every access token and pre-signed object URL handed out so far (secret-leak
        tests look for them in logs)."""
        with self.service.lock:
            return {k: list(v) for k, v in self.service.issued.items()}

    def clear_faults(self) -> None:
        self.service.faults.clear()

    def stats(self) -> dict[str, Any]:
        """Request counts per endpoint, jobs created (per table and kind), bytes served..."""
        return self.service.stats()

    def reset_stats(self) -> None:
        self.service.reset_stats()
