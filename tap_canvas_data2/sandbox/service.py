"""The sandbox's state and DAP operations, independent of HTTP (server.py maps requests here).

Everything mutable (timeline, catalog, jobs, tokens, stats) is guarded by one lock; object
generation runs outside it on a frozen :class:`~.timeline.Plan`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .catalog import Catalog, Column
from .encoders import FORMATS, MODES, ResultCache, write_objects
from .faults import IMMEDIATE, Fault, Faults
from .rows import RowGenerator, fmt_ts, parse_ts
from .timeline import DEFAULT_START_US, DEFAULT_STEP_US, Plan, Timeline, WindowError

JOB_SYNC_WAIT = 3.0  # seconds a job-creating POST waits for generation before answering
URL_TTL = 900  # pre-signed URLs live 15 minutes, like DAP's


class ApiError(Exception):
    """An HTTP error answer: status, JSON body and extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("error", {}).get("message", str(status)))
        self.status = status
        self.body = body
        self.headers = headers or {}


def error(status: int, type_: str, message: str, **extra: Any) -> ApiError:
    """``{"error": {"type", "uuid", "message", ...}}`` (401s must carry exactly those three)."""
    return ApiError(status, {"error": {"type": type_, "uuid": str(uuid.uuid4()),
                                       "message": message, **extra}})


def validation_error(message: str, raw: str = "", near: str | None = None,
                     pos: int | None = None) -> ApiError:
    """A ValidationError with the 1-based ``location`` the client requires."""
    if pos is None:
        pos = raw.find(json.dumps(near)) if near is not None else -1
        pos = max(pos, 0)
    line = raw.count("\n", 0, pos) + 1
    col = pos - (raw.rfind("\n", 0, pos) + 1) + 1
    return error(400, "ValidationError", message,
                 location={"line": line, "column": col, "character": pos + 1})


def iso_wall(t: float) -> str:
    """Wall-clock epoch seconds -> ISO 8601 UTC with Z (job ``expires_at``)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Job:
    id: str
    namespace: str
    table: str
    fmt: str
    mode: str
    incremental: bool
    created: float
    expires_at: float
    version: int
    until: int  # snapshot: at
    since: int | None
    future: Future
    polls_left: int
    fail: bool = False
    expiring: bool = False
    polled: int = 0
    objects: list[Path] = field(default_factory=list)
    error: dict[str, str] | None = None

    def object_ids(self) -> list[str]:
        return [f"{self.id}/{p.name}" for p in self.objects]


class SandboxService:
    """All DAP behaviour of one sandbox."""

    def __init__(self, *, seed: int = 7, rows: dict[str, int] | None = None,
                 rows_per_object: int = 100_000, job_polls: int = 0,
                 data_dir: str | Path, client_id: str, client_secret: str,
                 token_ttl: int = 3600, job_ttl: float = 24 * 3600, url_ttl: int = URL_TTL,
                 rate_limit: tuple[int, float] | None = None, retention: float | None = None,
                 start_us: int = DEFAULT_START_US, step_us: int = DEFAULT_STEP_US,
                 job_sync_wait: float = JOB_SYNC_WAIT):
        self.lock = threading.RLock()
        self.seed = seed
        self.catalog = Catalog()
        self.rows_per_object = rows_per_object
        self.job_polls = job_polls
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl, self.job_ttl, self.url_ttl = token_ttl, job_ttl, url_ttl
        self.rate_limit = rate_limit
        self.job_sync_wait = job_sync_wait
        self.faults = Faults()
        self.cache = ResultCache(Path(data_dir))
        self.timeline = Timeline(seed, start_us, step_us,
                                 None if retention is None else int(retention * 1_000_000))
        overrides = dict(rows or {})
        for ns in self.catalog.namespaces():
            for t in self.catalog.tables(ns):
                td = self.catalog.get(ns, t)
                n = overrides.pop(f"{ns}.{t}", overrides.pop(t, None)) if ns == "canvas" \
                    else overrides.pop(f"{ns}.{t}", None)
                self.timeline.add_table(ns, t, td.id_base, td.default_rows if n is None else int(n))
        if overrides:
            raise ValueError(f"unknown tables in rows=: {', '.join(overrides)}")
        self._gens: dict[tuple[str, str], RowGenerator] = {}
        self._secret = secrets.token_bytes(32)  # signs tokens and object URLs
        self._token_seq = 0
        self._expired_upto = 0  # tokens with seq <= this are expired (token_expire fault)
        self._revoked_upto = 0
        self.issued: dict[str, list[str]] = {"tokens": [], "urls": []}  # secrets handed out
        self._jobs: dict[str, Job] = {}
        self._job_times: dict[str, list[float]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dap-sandbox-gen")
        self._stats: dict[str, Any] = {}
        self.reset_stats()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- stats ------------------------------------------------------------------------------
    def reset_stats(self) -> None:
        with self.lock:
            self._stats = {"requests": {}, "jobs_created": 0, "jobs": {}, "logins": 0,
                           "objects_served": 0, "bytes_served": 0, "errors": {}}

    def count(self, endpoint: str, status: int | None = None) -> None:
        with self.lock:
            r = self._stats["requests"]
            r[endpoint] = r.get(endpoint, 0) + 1
            if status is not None and status >= 400:
                e = self._stats["errors"]
                k = f"{endpoint} {status}"
                e[k] = e.get(k, 0) + 1

    def add_bytes(self, n: int, objects: int = 0) -> None:
        with self.lock:
            self._stats["bytes_served"] += n
            self._stats["objects_served"] += objects

    def stats(self) -> dict[str, Any]:
        with self.lock:
            s = json.loads(json.dumps(self._stats))
            s["faults_fired"] = dict(self.faults.fired)
            s["faults_armed"] = self.faults.armed()
            return s

    # --- catalog ----------------------------------------------------------------------------
    def _table(self, ns: str, table: str):
        try:
            return self.catalog.get(ns, table)
        except KeyError:
            if ns not in self.catalog.namespaces():
                raise error(404, "NotFoundError", f"namespace {ns!r} does not exist",
                            id=ns, kind="namespace") from None
            raise error(404, "NotFoundError", f"table {table!r} does not exist in {ns!r}",
                        id=table, kind="table") from None

    def list_tables(self, ns: str) -> list[str]:
        if ns not in self.catalog.namespaces():
            raise error(404, "NotFoundError", f"namespace {ns!r} does not exist",
                        id=ns, kind="namespace")
        return self.catalog.tables(ns)

    def schema(self, ns: str, table: str) -> dict[str, Any]:
        with self.lock:
            td = self._table(ns, table)
            return {"schema": td.json_schema(), "version": td.version}

    def generator(self, ns: str, table: str) -> RowGenerator:
        with self.lock:
            g = self._gens.get((ns, table))
            if g is None:
                refs = {t: (self.catalog.get(ns, t).id_base, self.timeline.get(ns, t).initial_n)
                        for t in self.catalog.tables(ns)}
                g = self._gens[(ns, table)] = RowGenerator(self.seed, self.catalog.get(ns, table),
                                                           refs)
            return g

    # --- auth -------------------------------------------------------------------------------
    def login(self, authorization: str | None, form: dict[str, list[str]]) -> dict[str, Any]:
        with self.lock:
            self._stats["logins"] += 1
        if form.get("grant_type") != ["client_credentials"]:
            raise validation_error("grant_type must be client_credentials")
        ok = False
        if authorization and authorization.lower().startswith("basic "):
            try:
                cid, _, sec = base64.b64decode(authorization[6:].strip()).decode().partition(":")
                ok = hmac.compare_digest(cid, self.client_id) and \
                    hmac.compare_digest(sec, self.client_secret)
            except (ValueError, UnicodeDecodeError):
                ok = False
        if not ok:
            raise error(401, "AuthenticationError", "invalid client credentials")
        with self.lock:
            self._token_seq += 1
            seq = self._token_seq
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {"iss": "dap-sandbox", "sub": self.client_id, "iat": now,
                   "exp": now + self.token_ttl, "jti": str(seq), "scope": "urn:dap:sandbox"}
        signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
        sig = _b64(hmac.new(self._secret, signing.encode(), hashlib.sha256).digest())
        with self.lock:
            self.issued["tokens"].append(f"{signing}.{sig}")
        return {"access_token": f"{signing}.{sig}", "expires_in": self.token_ttl,
                "scope": "urn:dap:sandbox", "token_type": "Bearer"}

    def authenticate(self, authorization: str | None) -> str:
        """The client id of a valid bearer token, else a 401 ApiError."""
        if not authorization or not authorization.startswith("Bearer "):
            raise error(401, "AuthenticationError", "missing bearer token")
        token = authorization[7:].strip()
        try:
            signing, _, sig = token.rpartition(".")
            good = hmac.new(self._secret, signing.encode(), hashlib.sha256).digest()
            if not signing or not hmac.compare_digest(_unb64(sig), good):
                raise ValueError("bad signature")
            claims = json.loads(_unb64(signing.split(".")[1]))
        except (ValueError, IndexError, UnicodeDecodeError):
            raise error(401, "AuthenticationError", "invalid bearer token") from None
        seq = int(claims.get("jti", 0))
        if seq <= self._revoked_upto:
            raise error(401, "AuthenticationError", "token has been revoked")
        if claims.get("exp", 0) <= time.time() or seq <= self._expired_upto:
            raise error(401, "AuthenticationError", "token has expired")
        return str(claims.get("sub"))

    # --- jobs -------------------------------------------------------------------------------
    def create_job(self, ns: str, table: str, raw: str, client: str) -> dict[str, Any]:
        try:
            body = json.loads(raw or "null")
        except json.JSONDecodeError as e:
            raise validation_error(f"request body is not valid JSON: {e.msg}", raw,
                                   pos=e.pos) from None
        if not isinstance(body, dict):
            raise validation_error("request body must be a JSON object", raw, pos=0)
        for k in body:
            if k not in ("format", "mode", "since", "until"):
                raise validation_error(f"unknown property {k!r}", raw, near=k)
        fmt = body.get("format")
        if fmt == "parquet":
            raise validation_error("format 'parquet' is not supported by the sandbox; "
                                   "use jsonl, tsv or csv", raw, near="format")
        if fmt not in FORMATS:
            raise validation_error(f"format must be one of {', '.join(FORMATS)} (got {fmt!r})",
                                   raw, near="format")
        mode = body.get("mode") or "condensed"
        if mode not in MODES:
            raise validation_error(f"mode must be expanded or condensed (got {mode!r})",
                                   raw, near="mode")
        since = self._ts_field(body, "since", raw)
        until = self._ts_field(body, "until", raw)
        if until is not None and since is None:
            raise validation_error("until requires since", raw, near="until")
        if since is not None and until is not None and until < since:
            raise validation_error("until is earlier than since", raw, near="until")

        with self.lock:
            td = self._table(ns, table)
            self._check_rate(client)
            path = f"/dap/query/{ns}/table/{table}/data"
            if since is not None:
                f = self.faults.take(("snapshot_required", "out_of_range"), path)
                st = self.timeline.get(ns, table)
                if f is not None:
                    raise self._window_error(f.kind == "snapshot_required", since, st.latest)
                try:
                    plan = self.timeline.incremental(ns, table, since, until)
                except WindowError as e:
                    raise error(400, e.kind, str(e), since=fmt_ts(e.since),
                                until=None if e.until is None else fmt_ts(e.until)) from None
            else:
                plan = self.timeline.snapshot(ns, table)
            columns = list(td.columns)
            version = td.version
            fail = self.faults.take("job_fail", path) is not None
            expiring = self.faults.take("job_expiring", path) is not None
            gen = self.generator(ns, table)
            key = self.cache.key(ns, table, fmt, mode, plan.since, plan.until, version,
                                 self.rows_per_object, plan.incremental)
            fut = self._submit(key, plan, gen, td, columns, fmt, mode)
            now = time.time()
            job = Job(id=str(uuid.uuid4()), namespace=ns, table=table, fmt=fmt, mode=mode,
                      incremental=plan.incremental, created=now,
                      expires_at=now + (20 if expiring else self.job_ttl), version=version,
                      until=plan.until, since=plan.since, future=fut, polls_left=self.job_polls,
                      fail=fail, expiring=expiring)
            self._jobs[job.id] = job
            self._stats["jobs_created"] += 1
            k = f"{ns}.{table}"
            per = self._stats["jobs"].setdefault(k, {"snapshot": 0, "incremental": 0})
            per["incremental" if plan.incremental else "snapshot"] += 1
        if job.polls_left == 0:
            try:
                fut.result(timeout=self.job_sync_wait)
            except Exception:  # noqa: BLE001 - a failed generation shows as a failed job
                pass
        return self.job_json(job, poll=False)

    def _submit(self, key: str, plan: Plan, gen: RowGenerator, td, columns: list[Column],
                fmt: str, mode: str) -> Future:
        done = self.cache.get(key)
        if done is not None:
            f: Future = Future()
            f.set_result(done)
            return f
        return self._pool.submit(
            self.cache.produce, key,
            lambda out: write_objects(plan, gen, td, columns, fmt, mode, out,
                                      self.rows_per_object))

    def _window_error(self, snapshot_required: bool, since: int, latest: int) -> ApiError:
        if snapshot_required:
            return error(400, "SnapshotRequiredError",
                         "table was reloaded: a new snapshot is required (injected fault)",
                         since=fmt_ts(latest), until=fmt_ts(latest))
        return error(400, "OutOfRangeError", "since is outside the retention period "
                     "(injected fault)", since=fmt_ts(latest), until=fmt_ts(latest))

    def _ts_field(self, body: dict, name: str, raw: str) -> int | None:
        v = body.get(name)
        if v is None:
            return None
        if not isinstance(v, str):
            raise validation_error(f"{name} must be a date-time string", raw, near=name)
        try:
            return parse_ts(v)
        except ValueError as e:
            raise validation_error(f"{name}: {e}; a time zone (Z or an offset) is required",
                                   raw, near=name) from None

    def _check_rate(self, client: str) -> None:
        if not self.rate_limit:
            return
        n, per = self.rate_limit
        now = time.time()
        times = [t for t in self._job_times.get(client, []) if t > now - per]
        if len(times) >= n:
            wait = max(1, math.ceil(times[0] + per - now))
            e = error(429, "TooManyRequests", f"at most {n} jobs per {per:g} s; retry later")
            e.headers["Retry-After"] = str(wait)
            raise e
        times.append(now)
        self._job_times[client] = times

    def job(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None or job.expires_at < time.time():
                raise error(404, "NotFoundError", f"job {job_id!r} does not exist or expired",
                            id=job_id, kind="job")
        return self.job_json(job, poll=True)

    def job_json(self, job: Job, poll: bool) -> dict[str, Any]:
        with self.lock:
            if poll and job.polls_left > 0:
                job.polls_left -= 1
                job.polled += 1
            base = {"id": job.id, "expires_at": iso_wall(job.expires_at)}
            if job.polls_left > 0:
                return {"id": job.id, "status": "waiting" if job.polled == 0 else "running",
                        "expires_at": base["expires_at"]}
            if not job.future.done():
                return {"id": job.id, "status": "running", "expires_at": base["expires_at"]}
            exc = job.future.exception()
            if job.fail or exc is not None:
                if job.error is None:
                    job.error = {"type": "ProcessingError", "uuid": str(uuid.uuid4()),
                                 "message": "the query job failed (injected fault)" if job.fail
                                 else f"the query job failed: {exc}"}
                return {"id": job.id, "status": "failed", "expires_at": base["expires_at"],
                        "error": job.error}
            job.objects = job.future.result()
            out: dict[str, Any] = {"id": job.id, "status": "complete",
                                   "expires_at": base["expires_at"],
                                   "objects": [{"id": i} for i in job.object_ids()],
                                   "schema_version": job.version}
            if job.incremental:
                assert job.since is not None
                out["since"] = fmt_ts(job.since)
                out["until"] = fmt_ts(job.until)
            else:
                out["at"] = fmt_ts(job.until)
            return out

    # --- objects ----------------------------------------------------------------------------
    def object_urls(self, raw: str, base_url: str) -> dict[str, Any]:
        try:
            body = json.loads(raw or "null")
        except json.JSONDecodeError as e:
            raise validation_error(f"request body is not valid JSON: {e.msg}", raw,
                                   pos=e.pos) from None
        if not isinstance(body, list) or not all(
                isinstance(o, dict) and set(o) == {"id"} and isinstance(o["id"], str)
                for o in body):
            raise validation_error('body must be a list of {"id": "<object id>"}', raw, pos=0)
        urls = {}
        for o in body:
            oid = o["id"]
            self._resolve(oid)
            expired = self.faults.take("url_expire", "/dap/object/url") is not None
            urls[oid] = {"url": self._sign(base_url, oid, expired)}
        with self.lock:
            self.issued["urls"].extend(u["url"] for u in urls.values())
        return {"urls": urls}

    def _resolve(self, oid: str) -> Path:
        job_id, _, name = oid.partition("/")
        with self.lock:
            job = self._jobs.get(job_id)
        if job is not None and job.future.done() and not job.fail \
                and job.expires_at >= time.time() and job.future.exception() is None:
            for p in job.future.result():
                if p.name == name:
                    return p
        raise error(404, "NotFoundError", f"object {oid!r} does not exist", id=oid,
                    kind="object")

    def _sign(self, base_url: str, oid: str, expired: bool) -> str:
        path = f"/objects/{oid}"
        issued = int(time.time()) - (2 * self.url_ttl + 60 if expired else 0)
        date = datetime.fromtimestamp(issued, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        sig = hmac.new(self._secret, f"{path}\n{date}\n{self.url_ttl}".encode(),
                       hashlib.sha256).hexdigest()
        return (f"{base_url}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}"
                f"&X-Amz-Expires={self.url_ttl}&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}")

    def object_path(self, path: str, query: dict[str, list[str]]) -> Path:
        """Check a pre-signed URL; return the file, or raise (403 body is S3-style XML)."""
        q = {k: v[0] for k, v in query.items()}
        date, exp, sig = q.get("X-Amz-Date", ""), q.get("X-Amz-Expires", ""), \
            q.get("X-Amz-Signature", "")
        good = hmac.new(self._secret, f"{path}\n{date}\n{exp}".encode(),
                        hashlib.sha256).hexdigest()
        if not sig or not hmac.compare_digest(sig, good):
            raise S3Error("SignatureDoesNotMatch", "The request signature we calculated does "
                          "not match the signature you provided.")
        issued = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        if issued.timestamp() + int(exp) < time.time():
            raise S3Error("AccessDenied", "Request has expired")
        try:
            return self._resolve(path[len("/objects/"):])
        except ApiError:
            raise S3Error("NoSuchKey", "The specified key does not exist.", 404) from None

    # --- admin ------------------------------------------------------------------------------
    def advance(self, ns: str, table: str, inserts: int = 0, updates: int = 0, deletes: int = 0,
                update_ids: list[int] | None = None, delete_ids: list[int] | None = None) -> str:
        with self.lock:
            self._table(ns, table)
            return fmt_ts(self.timeline.advance(ns, table, inserts, updates, deletes,
                                                update_ids, delete_ids))

    def bump_schema(self, ns: str, table: str, column: str | None = None,
                    type_: str = "varchar(255)") -> int:
        with self.lock:
            self._table(ns, table)
            # the column exists from the next tick on: rows written later carry values in it
            added_at = self.timeline.clock + 1
            return self.catalog.bump_schema(ns, table, added_at, column, type_)

    def reload(self, ns: str, table: str) -> str:
        with self.lock:
            self._table(ns, table)
            return fmt_ts(self.timeline.reload(ns, table))

    def expire_history(self, ns: str, table: str, before: str | None = None) -> str:
        with self.lock:
            self._table(ns, table)
            return fmt_ts(self.timeline.expire_history(
                ns, table, None if before is None else parse_ts(before)))

    def inject(self, kind: str, count: int = 1, path: str | None = None,
               retry_after: int = 1, type_: str | None = None) -> None:
        if kind in IMMEDIATE:
            with self.lock:
                if kind == "token_expire":
                    self._expired_upto = self._token_seq
                else:
                    self._revoked_upto = self._token_seq
                self.faults.fired[kind] = self.faults.fired.get(kind, 0) + 1
            return
        self.faults.add(Fault(kind=kind, count=count, path=path, retry_after=retry_after,
                              extra={"type": type_} if type_ else {}))

    def expected_rows(self, ns: str, table: str) -> Iterator[dict[str, Any]]:
        """Current rows; the table is checked (and the state frozen) before this returns."""
        with self.lock:
            td = self._table(ns, table)
            plan = self.timeline.snapshot(ns, table)
            columns = list(td.columns)
            gen = self.generator(ns, table)

        def rows() -> Iterator[dict[str, Any]]:
            for offs, revs, tss, _ in plan.records():
                for o, r, t in zip(offs, revs, tss, strict=True):
                    yield gen.row_dict(o, r, t, columns)

        return rows()

    def state(self) -> dict[str, Any]:
        with self.lock:
            out = {}
            for (ns, t), st in self.timeline.tables.items():
                out[f"{ns}.{t}"] = {"latest": fmt_ts(st.latest), "live_rows": st.live_count(),
                                    "max_id": st.id_base + st.max_n,
                                    "schema_version": self.catalog.get(ns, t).version}
            return out

    def pregenerate(self, ns: str, table: str, fmt: str = "tsv",
                    mode: str = "condensed") -> int:
        """Generate the current snapshot's objects now (benchmarks: before timing starts)."""
        with self.lock:
            td = self._table(ns, table)
            plan = self.timeline.snapshot(ns, table)
            key = self.cache.key(ns, table, fmt, mode, plan.since, plan.until, td.version,
                                 self.rows_per_object, False)
            fut = self._submit(key, plan, self.generator(ns, table), td, list(td.columns),
                               fmt, mode)
        return len(fut.result())


class S3Error(Exception):
    """An object-storage error: answered as S3 does, with an XML body."""

    def __init__(self, code: str, message: str, status: int = 403):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def xml(self) -> bytes:
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{self.message}</Message><RequestId>{uuid.uuid4().hex[:16]}"
                f"</RequestId></Error>").encode()
