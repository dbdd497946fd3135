"""The tap's view of DAP: a thin adapter over the API client (tap_canvas_data2.api).

Everything the tap and export need from DAP goes through :class:`DapSession`, so the tap
does not depend on the client's exact call signatures in more than one place.

``DapSession(config)``:
  - ``list_tables(ns) -> list[str]``
  - ``get_schema(ns, table) -> (schema, version)``
  - ``snapshot(ns, table, fmt) -> Job`` / ``incremental(ns, table, since, until, fmt) -> Job``
    (both wait for completion; raise SnapshotRequiredError / OutOfRangeError as the client does)
  - ``iter_batches(job, dap_schema, fmt)`` -> iterator of parsed record batches
    (``[(action, ts, row), ...]``), downloads prefetched in threads while the caller parses
  - ``iter_object_bytes(job)`` -> iterator of ``(object_id, decompressed byte chunks)``
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import typing as t

from tap_canvas_data2.api.objects import ObjectParser

logger = logging.getLogger("tap-canvas-data2.dap")

_SANDBOX_LOCK = threading.Lock()
_SANDBOX: t.Any = None


def start_sandbox() -> t.Any:
    """Start (once per process) the in-process sandbox used by ``base_url: sandbox``."""
    global _SANDBOX  # noqa: PLW0603
    with _SANDBOX_LOCK:
        if _SANDBOX is None:
            from tap_canvas_data2.sandbox import Sandbox  # noqa: PLC0415

            sb = Sandbox()
            sb.__enter__()
            atexit.register(sb.__exit__, None, None, None)
            _SANDBOX = sb
            logger.info("Started the local DAP sandbox at %s", sb.url)
        return _SANDBOX


@dataclasses.dataclass
class Job:
    """A completed DAP query job (snapshot: ``at``; incremental: ``since``/``until``)."""

    id: str
    schema_version: int | None
    objects: list[str]
    at: str | None = None
    since: str | None = None
    until: str | None = None
    raw: t.Any = None


class DapSession:
    """DAP access for one tap run (one client, one downloader)."""

    def __init__(self, config: dict) -> None:
        self.config = dict(config)
        base_url = str(self.config.get("base_url") or "")
        if base_url == "sandbox":
            sb = start_sandbox()
            base_url = sb.url
            self.config["client_id"] = sb.client_id
            self.config["client_secret"] = sb.client_secret
        self.base_url = base_url.rstrip("/")
        self.concurrency = max(1, int(self.config.get("download_concurrency") or 4))
        self.client = self._make_client()

    # ------------------------------------------------------------------ client

    def _make_client(self) -> t.Any:
        from tap_canvas_data2.api.client import DAPClient  # noqa: PLC0415

        cfg = self.config
        kwargs: dict[str, t.Any] = {"download_concurrency": self.concurrency}
        if cfg.get("temp_dir"):
            kwargs["temp_dir"] = cfg["temp_dir"]
        if cfg.get("poll_interval_max") is not None:
            kwargs["poll_interval_max"] = float(cfg["poll_interval_max"])
            kwargs["poll_interval_initial"] = min(0.5, float(cfg["poll_interval_max"]))
        for name in ("jobs_per_minute", "max_retries", "backoff_max"):
            if cfg.get(name) is not None:
                kwargs[name] = cfg[name]
        return DAPClient(self.base_url, cfg.get("client_id"), cfg.get("client_secret"),
                         **kwargs)

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def list_tables(self, namespace: str) -> list[str]:
        return list(self.client.list_tables(namespace))

    def get_schema(self, namespace: str, table: str) -> tuple[dict, int]:
        schema, version = self.client.get_schema(namespace, table)
        return schema, int(version)

    @staticmethod
    def _job(raw: t.Any) -> Job:
        return Job(id=raw.id, schema_version=raw.schema_version, objects=list(raw.objects),
                   at=raw.at_str, since=raw.since_str, until=raw.until_str, raw=raw)

    def snapshot(self, namespace: str, table: str, fmt: str) -> Job:
        return self._job(self.client.snapshot(namespace, table, format=fmt, mode="condensed"))

    def incremental(self, namespace: str, table: str, since: str, until: str | None,
                    fmt: str) -> Job:
        return self._job(self.client.incremental(
            namespace, table, since, until, format=fmt, mode="condensed"))

    # ------------------------------------------------------------------ objects

    def iter_object_bytes(self, job: Job) -> t.Iterator[tuple[str, t.Iterable[bytes]]]:
        """Decompressed objects in job order as ``(object_id, byte chunks)``; later objects
        download (``download_concurrency`` at a time) while the caller consumes one."""
        if not job.objects:
            return iter(())
        return self.client.download(job.raw)

    def iter_batches(self, job: Job, dap_schema: dict, fmt: str) -> t.Iterator[list]:
        """Parsed record batches of every object of the job, in job order."""
        parser = ObjectParser(dap_schema, fmt)
        for _oid, chunks in self.iter_object_bytes(job):
            yield from parser.batches(chunks)
