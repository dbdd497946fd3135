"""DAPClient: tables, schemas, snapshot / incremental query jobs, object URLs and downloads.

```python
with DAPClient(url, client_id, client_secret) as dap:
    schema, version = dap.get_schema("canvas", "users")
    job = dap.snapshot("canvas", "users")                 # waits for the job
    for action, ts, row in dap.records(job, schema):      # download + parse, in object order
        ...
    job2 = dap.incremental("canvas", "users", since=job.at_str)
```
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from .auth import TokenProvider
from .errors import (
    AuthenticationError,
    DAPError,
    JobFailedError,
    ProtocolError,
    error_from_response,
    redact_text,
)
from .http import HTTPSession, RetryPolicy, json_body
from .objects import ObjectParser, Record, TableLayout

__all__ = ["DAPClient", "CompletedJob", "JobRateLimiter", "parse_timestamp", "format_timestamp"]

log = logging.getLogger("tap_canvas_data2.api.client")

FORMATS = ("tsv", "jsonl", "csv")
MODES = ("condensed", "expanded", None)
EXPIRY_MARGIN = 30.0  # a completed job expiring sooner than this is queried again


# --------------------------------------------------------------------------- timestamps

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(text: str) -> datetime:
    """A DAP timestamp (``2024-01-02T03:04:05.123456Z`` or with an offset) -> aware UTC."""
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    t = _FRACTION.sub(r"\1", text.strip())
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return dt.astimezone(timezone.utc)


def format_timestamp(value: datetime | str) -> str:
    """An aware datetime (or a zoned timestamp string) -> ``YYYY-MM-DDThh:mm:ss[.ffffff]Z``."""
    if isinstance(value, str):
        value = parse_timestamp(value)
    if value.tzinfo is None:
        raise ValueError(
            "naive datetime: DAP needs a time zone; pass an aware datetime (UTC) or a string "
            "ending in Z")
    v = value.astimezone(timezone.utc)
    base = v.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{v.microsecond:06d}Z" if v.microsecond else base + "Z"


def _zoned_string(value: datetime | str, name: str) -> str:
    """``since``/``until`` as sent to DAP: strings with a zone pass through unchanged."""
    if isinstance(value, str):
        parse_timestamp(value)  # validates (raises ValueError without a zone)
        return value
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(f"{name} must be a datetime or a timestamp string, not {type(value)}")


# --------------------------------------------------------------------------- job result


@dataclass(frozen=True)
class CompletedJob:
    """A completed DAP query job.  Datetimes are aware UTC; ``*_str`` are DAP's own strings.

    ``at`` is set for a snapshot, ``since``/``until`` for an incremental query.
    ``bookmark`` is the string the next incremental query starts from (``at`` or ``until``).
    """

    id: str
    namespace: str
    table: str
    objects: tuple[str, ...]
    schema_version: int
    format: str
    mode: str | None
    expires_at: datetime
    expires_at_str: str
    at: datetime | None = None
    at_str: str | None = None
    since: datetime | None = None
    since_str: str | None = None
    until: datetime | None = None
    until_str: str | None = None

    @property
    def kind(self) -> str:
        """``"snapshot"`` or ``"incremental"``."""
        return "snapshot" if self.at is not None else "incremental"

    @property
    def bookmark(self) -> str:
        """``at`` (snapshot) or ``until`` (incremental), as DAP sent it."""
        value = self.at_str if self.at_str is not None else self.until_str
        assert value is not None
        return value

    @classmethod
    def from_json(cls, job: Mapping[str, Any], namespace: str, table: str, format: str,
                  mode: str | None) -> CompletedJob:
        """Build from a ``status: complete`` job body."""
        try:
            objects = tuple(str(o["id"]) for o in job.get("objects") or [])
            expires = str(job["expires_at"])
            kw: dict[str, Any] = {}
            for name in ("at", "since", "until"):
                if job.get(name) is not None:
                    kw[name] = parse_timestamp(str(job[name]))
                    kw[f"{name}_str"] = str(job[name])
            if "at" not in kw and "until" not in kw:
                raise KeyError("at/until")
            return cls(id=str(job["id"]), namespace=namespace, table=table, objects=objects,
                       schema_version=int(job["schema_version"]), format=format, mode=mode,
                       expires_at=parse_timestamp(expires), expires_at_str=expires, **kw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(
                f"DAP returned a completed job for {namespace}.{table} without a valid "
                f"{exc}: unexpected response shape; check base_url and the client version"
            ) from None


# --------------------------------------------------------------------------- job spacing


class JobRateLimiter:
    """Spaces job creations ``60 / jobs_per_minute`` seconds apart (shared by all threads of
    one client).  ``jobs_per_minute`` None or <= 0 disables the spacing."""

    def __init__(self, jobs_per_minute: float | None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 60.0 / jobs_per_minute if jobs_per_minute and jobs_per_minute > 0 \
            else 0.0
        self._sleep, self._clock = sleep, clock
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> float:
        """Wait for the next slot; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            log.debug("spacing DAP job creation: waiting %.2f s", wait)
            self._sleep(wait)
        return wait


# --------------------------------------------------------------------------- client


class DAPClient:
    """Client of the DAP API (Canvas Data 2).

    Retries (429 with Retry-After, 5xx, dropped connections) are bounded by ``max_retries``
    with exponential backoff + full jitter between ``backoff_base`` and ``backoff_max``.
    Jobs are polled with intervals growing from ``poll_interval_initial`` to
    ``poll_interval_max`` and created at most ``jobs_per_minute`` per minute (evenly
    spaced).  Objects are downloaded ``download_concurrency`` at a time, spooled to
    ``temp_dir`` when given (else streamed through bounded memory).
    """

    def __init__(self, base_url: str, client_id: str, client_secret: str, *,
                 max_retries: int = 5, backoff_base: float = 1.0, backoff_max: float = 30.0,
                 retry_after_default: float = 30.0,
                 poll_interval_initial: float = 0.5, poll_interval_max: float = 5.0,
                 jobs_per_minute: float | None = 5, download_concurrency: int = 4,
                 temp_dir: str | None = None,
                 timeout: float | tuple[float, float] = (10.0, 120.0),
                 job_rerun_margin: float = 5.0, max_job_reruns: int = 3,
                 url_batch_size: int = 100,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not base_url:
            raise ValueError("base_url is required (e.g. https://api-gateway.instructure.com)")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required (DAP_CLIENT_ID / "
                             "DAP_CLIENT_SECRET)")
        self.base_url = base_url.rstrip("/")
        self.policy = RetryPolicy(max_retries, backoff_base, backoff_max, retry_after_default,
                                  sleep=sleep)
        self._secrets = (client_secret,)
        self.http = HTTPSession(self.policy, timeout=timeout, secrets=self._secrets)
        self.tokens = TokenProvider(self.http, self.base_url, client_id, client_secret)
        self.poll_interval_initial = poll_interval_initial
        self.poll_interval_max = poll_interval_max
        self.limiter = JobRateLimiter(jobs_per_minute, sleep=sleep)
        self.download_concurrency = max(1, int(download_concurrency))
        self.temp_dir = temp_dir
        self.timeout = timeout
        self.job_rerun_margin = job_rerun_margin
        self.max_job_reruns = max_job_reruns
        self.url_batch_size = max(1, url_batch_size)
        self._sleep = sleep

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DAPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- plumbing

    def _api(self, method: str, path: str, *, what: str, namespace: str | None = None,
             table: str | None = None, json: Any = None) -> Any:
        """An authenticated JSON call; on 401 logs in again once and retries the call."""
        url = self.base_url + path
        for attempt in (1, 2):
            token = self.tokens.token()
            resp = self.http.request(
                method, url, what=what, namespace=namespace, table=table, json=json,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            if resp.status_code == 401 and attempt == 1:
                log.debug("%s: token rejected (401); logging in again", what)
                self.tokens.invalidate(token)
                continue
            body = json_body(resp)
            if resp.status_code == 401:
                err = error_from_response(401, body, what=what, secrets=self._secrets)
                raise AuthenticationError(
                    f"DAP rejected a freshly issued access token (401) for {what}: check that "
                    "the key (DAP_CLIENT_ID / DAP_CLIENT_SECRET) is still valid and has access "
                    "to this API", status=401, uuid=err.uuid, error_type=err.error_type,
                    server_message=err.server_message)
            if resp.status_code >= 300:
                raise error_from_response(resp.status_code, body, what=what,
                                          namespace=namespace, table=table,
                                          secrets=self._secrets)
            if not isinstance(body, (dict, list)):
                raise ProtocolError(
                    f"DAP answered {what} with a non-JSON body "
                    f"({redact_text(str(body)[:80], self._secrets)!r}): check base_url")
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _seg(text: str) -> str:
        return quote(text, safe="")

    # ---------------------------------------------------------------- catalog

    def list_tables(self, namespace: str) -> list[str]:
        """Names of the tables of ``namespace`` (e.g. ``canvas``)."""
        body = self._api("GET", f"/dap/query/{self._seg(namespace)}/table",
                         what=f"list tables of {namespace}", namespace=namespace)
        tables = body.get("tables") if isinstance(body, dict) else None
        if not isinstance(tables, list):
            raise ProtocolError(f"DAP answered list tables of {namespace} without 'tables'")
        return [str(t) for t in tables]

    def get_schema(self, namespace: str, table: str) -> tuple[dict[str, Any], int]:
        """``(schema, version)`` of a table, the schema exactly as DAP serves it."""
        body = self._api(
            "GET", f"/dap/query/{self._seg(namespace)}/table/{self._seg(table)}/schema",
            what=f"get schema of {namespace}.{table}", namespace=namespace, table=table)
        try:
            return body["schema"], int(body["version"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(
                f"DAP answered get schema of {namespace}.{table} without schema/version"
            ) from None

    # ---------------------------------------------------------------- jobs

    def snapshot(self, namespace: str, table: str, format: str = "tsv",
                 mode: str | None = "condensed") -> CompletedJob:
        """Run a snapshot query and wait for it: every live row as of ``job.at``."""
        return self._query(namespace, table, format, mode, None, None)

    def incremental(self, namespace: str, table: str, since: datetime | str,
                    until: datetime | str | None = None, format: str = "tsv",
                    mode: str | None = "condensed") -> CompletedJob:
        """Run an incremental query and wait for it: changes committed in
        ``(since, until]`` (``until`` defaults to the latest commit)."""
        return self._query(namespace, table, format, mode, since, until)

    def _query(self, namespace: str, table: str, format: str, mode: str | None,
               since: datetime | str | None, until: datetime | str | None) -> CompletedJob:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)} (got {format!r})")
        if mode not in MODES:
            raise ValueError(f"mode must be condensed, expanded or None (got {mode!r})")
        body: dict[str, Any] = {"format": format}
        if mode is not None:
            body["mode"] = mode
        if since is not None:
            body["since"] = _zoned_string(since, "since")
            if until is not None:
                body["until"] = _zoned_string(until, "until")
        elif until is not None:
            raise ValueError("until needs since (a snapshot has no until)")
        kind = "incremental" if since is not None else "snapshot"
        path = f"/dap/query/{self._seg(namespace)}/table/{self._seg(table)}/data"
        previous: CompletedJob | None = None
        for _run in range(self.max_job_reruns + 1):
            self.limiter.acquire()
            job = self._api("POST", path, what=f"{kind} query of {namespace}.{table}",
                            namespace=namespace, table=table, json=body)
            if previous is not None and isinstance(job, dict) and job.get("id") == previous.id:
                # DAP handed back the same (about to expire) job: wait until it is gone
                wait = max(0.0, (previous.expires_at - _now()).total_seconds())
                log.info("DAP returned the expiring job %s again; waiting %.0f s for it to "
                         "expire", previous.id, wait + self.job_rerun_margin)
                self._sleep(wait + self.job_rerun_margin)
                continue
            done = self._await_job(job, namespace, table)
            completed = CompletedJob.from_json(done, namespace, table, format, mode)
            left = (completed.expires_at - _now()).total_seconds()
            if left > EXPIRY_MARGIN:
                log.debug("%s job %s of %s.%s complete: %d objects", kind, completed.id,
                          namespace, table, len(completed.objects))
                return completed
            log.info("DAP job %s of %s.%s expires in %.0f s; running the query again",
                     completed.id, namespace, table, left)
            previous = completed
        raise DAPError(
            f"DAP kept returning {kind} jobs of {namespace}.{table} that expire within "
            f"{EXPIRY_MARGIN:.0f} s ({self.max_job_reruns + 1} tries): retry later")

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The job body as DAP serves it (an unknown or expired id -> NotFoundError)."""
        return self._api("GET", f"/dap/job/{self._seg(job_id)}", what=f"get job {job_id}")

    def _await_job(self, job: Any, namespace: str, table: str) -> dict[str, Any]:
        """Poll ``GET /dap/job/{id}`` with growing intervals until complete or failed."""
        interval = self.poll_interval_initial
        while True:
            if not isinstance(job, dict) or "id" not in job or "status" not in job:
                raise ProtocolError(
                    f"DAP answered a query of {namespace}.{table} with something that is not "
                    "a job: check base_url and the client version")
            status = job["status"]
            job_id = str(job["id"])
            if status == "complete":
                return job
            if status == "failed":
                err = job.get("error") if isinstance(job.get("error"), dict) else {}
                etype = err.get("type") or "unknown error"
                msg = redact_text(str(err.get("message") or ""), self._secrets)
                raise JobFailedError(
                    f"DAP job {job_id} for {namespace}.{table} failed ({etype}"
                    f"{': ' + msg if msg else ''}); run the sync again, and contact "
                    "Instructure support if it keeps failing", job_id=job_id,
                    uuid=err.get("uuid"), error_type=err.get("type"), server_message=msg)
            if status not in ("waiting", "running"):
                raise ProtocolError(f"DAP job {job_id} has an unknown status {status!r}")
            self._sleep(interval)
            interval = min(self.poll_interval_max, interval * 1.5)
            job = self._api("GET", f"/dap/job/{self._seg(job_id)}",
                            what=f"get job {job_id}", namespace=namespace, table=table)

    # ---------------------------------------------------------------- objects

    def object_urls(self, object_ids: Iterable[str]) -> dict[str, str]:
        """Pre-signed URLs of objects, ``{object_id: url}`` (batched requests)."""
        ids = list(object_ids)
        urls: dict[str, str] = {}
        for i in range(0, len(ids), self.url_batch_size):
            batch = ids[i:i + self.url_batch_size]
            body = self._api("POST", "/dap/object/url", what="get object URLs",
                             json=[{"id": oid} for oid in batch])
            got = body.get("urls") if isinstance(body, dict) else None
            if not isinstance(got, dict):
                raise ProtocolError("DAP answered get object URLs without 'urls'")
            for oid in batch:
                entry = got.get(oid)
                url = entry.get("url") if isinstance(entry, dict) else None
                if not isinstance(url, str):
                    raise ProtocolError(f"DAP returned no URL for object {oid}")
                urls[oid] = url
        return urls

    def download(self, job: CompletedJob, *, temp_dir: str | None = None,
                 concurrency: int | None = None) -> Iterator[tuple[str, Iterator[bytes]]]:
        """The decompressed objects of ``job`` in object order: ``(object_id, chunks)``.
        Consume (or drop) each ``chunks`` before advancing; later objects download
        meanwhile (see :class:`~tap_canvas_data2.api.download.ObjectDownloader`)."""
        from .download import ObjectDownloader

        downloader = ObjectDownloader(
            self, concurrency=concurrency or self.download_concurrency,
            temp_dir=temp_dir if temp_dir is not None else self.temp_dir)
        return downloader.iter_objects(job.objects)

    def records(self, job: CompletedJob, schema: Mapping[str, Any] | TableLayout, *,
                temp_dir: str | None = None) -> Iterator[Record]:
        """Every record ``(action, ts, row)`` of ``job``, in object order."""
        for batch in self.record_batches(job, schema, temp_dir=temp_dir):
            yield from batch

    def record_batches(self, job: CompletedJob, schema: Mapping[str, Any] | TableLayout, *,
                       temp_dir: str | None = None) -> Iterator[list[Record]]:
        """Like :meth:`records`, in lists (cheaper per record for the consumer)."""
        parser = ObjectParser(schema, job.format)
        for _oid, chunks in self.download(job, temp_dir=temp_dir):
            yield from parser.batches(chunks)


def _now() -> datetime:
    return datetime.now(timezone.utc)
