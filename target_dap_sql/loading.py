"""The message loop: batching, upsert/delete/replace per stream, commit before state.

Each input line is parsed once (orjson); a RECORD is rendered straight into its stream's
batch (``key -> load row``, ``None`` = delete), so the last message per key in a batch wins.
A batch is flushed when it holds ``batch_size_rows`` keys (or ~``max_batch_bytes``), on a
schema change, on ACTIVATE_VERSION, on STATE and at the end of input; each flush is one
transaction. On STATE every batch is flushed, the ``table_sync`` rows of streams whose
bookmark changed are written, everything is committed, and only then is the STATE printed.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

import orjson

from target_dap_sql import meta
from target_dap_sql.ddl import TableDef, table_def_from_schema
from target_dap_sql.dialects.base import DELETED_AT, Dialect, Renderer, Snapshot, first_line
from target_dap_sql.errors import BadRecord, MalformedInput, RejectedByDatabase, TargetError

try:  # the C record path (setup.py builds it when a compiler is at hand)
    from target_dap_sql import _rows
except ImportError:  # pragma: no cover - pure-Python install
    _rows = None  # type: ignore[assignment]
if os.environ.get("CANVAS_DATA2_PURE_PYTHON"):  # the Python paths only (diagnosis, tests)
    _rows = None  # type: ignore[assignment]

PROGRESS_EVERY_SECONDS = 5.0
#: Keys per flush while COPYing a first snapshot into an empty table: small enough that the
#: database loads one chunk while the next is parsed (two CPUs busy instead of one).
DIRECT_CHUNK_ROWS = 20_000
#: Rendered bytes per flush: bounds the memory of a batch (the rows, their joined copy and
#: the background flush of the previous batch) whatever the row width; ~40k rows of 46 columns.
MAX_BATCH_BYTES = 32 * 1024 * 1024


@dataclass
class StreamState:
    """Everything the loader keeps per stream."""

    tdef: TableDef
    schema: dict
    renderer: Renderer
    rows: dict = field(default_factory=dict)
    nbytes: int = 0
    snapshot: Snapshot | None = None
    bookmark_written: Any = None
    received: int = 0
    loaded: int = 0
    inserted: int = 0
    upserted: int = 0
    deleted: int = 0
    started: float = field(default_factory=time.monotonic)
    db_seconds: float = 0.0
    last_progress_rows: int = 0


READ_BLOCK_BYTES = 1 << 20
PIPE_BYTES = 1 << 20


def _widen_pipe(source: Any) -> None:
    """Give a pipe on stdin a 1 MiB buffer (Linux; 64 KiB by default), so that the tap can
    write ahead while this process renders or hands a batch over, instead of being stalled
    every 64 KiB; silently skipped where not possible."""
    try:
        fd = source.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode) and hasattr(fcntl, "F_SETPIPE_SZ"):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _lines_of(source: Iterable[bytes | str]) -> Iterable[bytes | str]:
    """The lines of ``source``; a binary stream is read in blocks of whatever has arrived
    (``read1``: never waits for a full block, so a STATE is seen as soon as it is written)
    and split in C, instead of one ``readline`` per message."""
    read1 = getattr(source, "read1", None)
    if read1 is None or isinstance(source, io.TextIOBase):
        yield from source
        return
    _widen_pipe(source)
    rest = b""
    while True:
        block = read1(READ_BLOCK_BYTES)
        if not block:
            break
        if rest:
            block = rest + block
        lines = block.split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


class Loader:
    """Reads Singer messages and keeps the database in step with them."""

    def __init__(self, dialect: Dialect, *, batch_size_rows: int = 100_000,
                 default_schema: str | None = None, max_batch_bytes: int = MAX_BATCH_BYTES,
                 out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.d = dialect
        self.batch_size_rows = max(1, int(batch_size_rows))
        self.max_batch_bytes = max_batch_bytes
        self.default_schema = default_schema
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.streams: dict[str, StreamState] = {}
        self.last_state: Any = None
        self.state_emitted = True
        self.lineno = 0
        self.started = time.monotonic()
        self._worker: threading.Thread | None = None
        self._worker_error: BaseException | None = None
        self._next_progress = self.started + PROGRESS_EVERY_SECONDS
        # the C record path: {stream name (bytes): plan} and {stream name (bytes): state}
        self._plans: dict[bytes, tuple] = {}
        self._by_name: dict[bytes, StreamState] = {}

    # ----------------------------------------------------------------- output
    def log(self, text: str) -> None:
        """One progress/log line on stderr."""
        self.err.write(f"target-dap-sql: {text}\n")
        self.err.flush()

    def emit_state(self, value: Any) -> None:
        """Print a STATE value (after its data is committed)."""
        self.out.write(orjson.dumps(value).decode() + "\n")
        self.out.flush()
        self.state_emitted = True

    # ----------------------------------------------------------------- loop
    def run(self, lines: Iterable[bytes | str]) -> None:
        """Process every line, then flush, commit and emit the last state."""
        meta.ensure_meta_tables(self.d)
        loads = orjson.loads
        streams = self.streams
        batch_limit = self.batch_size_rows
        byte_limit = self.max_batch_bytes
        lineno = 0
        fast_row = _rows.row if _rows is not None else None
        plans = self._plans
        by_name = self._by_name
        for line in _lines_of(lines):
            lineno += 1
            # the C path: a RECORD line of a known stream straight to its row (or None)
            got = fast_row(line, plans) if plans and type(line) is bytes else None
            try:
                if got is not None:
                    name, key, row, version = got
                    st = by_name[name]
                else:
                    try:
                        msg = loads(line)
                        slow = False
                    except orjson.JSONDecodeError:
                        if not line.strip():
                            continue
                        msg, slow = self._parse_fallback(line, lineno), True
                    if not (msg.get("type") == "RECORD" if type(msg) is dict else False):
                        self._dispatch(msg, lineno)
                        continue
                    st = streams.get(msg.get("stream"))
                    rec = msg.get("record")
                    if st is None or type(rec) is not dict:
                        self._bad_record_message(msg, lineno)
                    version = msg.get("version")
                    if rec.get(DELETED_AT):
                        key, row = st.renderer.key_of(rec), None
                    else:
                        key, row = (st.renderer.slow if slow and st.renderer.slow
                                    else st.renderer.render)(rec)
                if version is not None and (st.snapshot is None
                                            or st.snapshot.version != version):
                    self._begin_snapshot(st, version)
                st.rows[key] = row
                if row is not None:
                    st.nbytes += len(row) if type(row) is bytes or type(row) is str else 64
                st.received += 1
                if len(st.rows) >= batch_limit or st.nbytes >= byte_limit or (
                        len(st.rows) >= DIRECT_CHUNK_ROWS and st.snapshot is not None
                        and st.snapshot.direct):
                    self.flush_in_background(st)
                    self.progress()
                elif not (st.received & 0x3FFF):
                    self.progress()
            except TargetError as exc:
                if isinstance(exc, RejectedByDatabase) or not isinstance(exc, BadRecord):
                    raise
                raise BadRecord(f"input line {lineno}: {exc}") from exc
            except KeyError as exc:
                stream = got[0].decode() if got is not None else msg.get("stream")
                raise MalformedInput(f"input line {lineno}: a record of stream "
                                     f"{stream!r} lacks key property {exc}") from exc
        self.lineno = lineno
        self.finish()

    def _parse_fallback(self, line: bytes | str, lineno: int) -> dict:
        """Lines orjson refuses: NaN/Infinity literals are accepted (stdlib json)."""
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise MalformedInput(f"input line {lineno}: not valid JSON ({first_line(exc)}); "
                                 "the tap's output is broken or was cut off") from exc
        return msg

    def _bad_record_message(self, msg: dict, lineno: int) -> None:
        stream = msg.get("stream")
        if stream not in self.streams:
            raise MalformedInput(f"input line {lineno}: RECORD for stream {stream!r} before its "
                                 "SCHEMA message; the tap must send SCHEMA first")
        raise MalformedInput(f"input line {lineno}: RECORD for stream {stream!r} has no "
                             "'record' object")

    def _dispatch(self, msg: Any, lineno: int) -> None:
        if type(msg) is not dict:
            raise MalformedInput(f"input line {lineno}: not a Singer message (a JSON object "
                                 "with a 'type' is expected)")
        kind = msg.get("type")
        if kind == "SCHEMA":
            self.on_schema(msg, lineno)
        elif kind == "STATE":
            self.on_state(msg.get("value"))
        elif kind == "ACTIVATE_VERSION":
            self.on_activate_version(msg, lineno)
        elif kind == "RECORD":
            self._bad_record_message(msg, lineno)
        elif kind == "BATCH":
            raise MalformedInput(f"input line {lineno}: BATCH messages are not supported; "
                                 "run the tap without batch_config")
        else:
            raise MalformedInput(f"input line {lineno}: unknown message type {kind!r}")

    # ----------------------------------------------------------------- messages
    def on_schema(self, msg: dict, lineno: int) -> None:
        """Create or evolve the stream's table (flushing its batch first)."""
        try:
            tdef = table_def_from_schema(msg, self.default_schema)
        except MalformedInput as exc:
            raise MalformedInput(f"input line {lineno}: {exc}") from exc
        st = self.streams.get(tdef.stream)
        if st is not None and st.schema == msg.get("schema") and st.tdef.key == tdef.key:
            return
        self.wait()
        if st is not None:
            self.flush(st)
            self.d.commit()
        self.d.ensure_table(tdef, meta.previous_columns(self.d, tdef))
        renderer = self.d.renderer(tdef)
        name = tdef.stream.encode("utf-8")
        plan = self.d.copy_plan(tdef) if _rows is not None else None
        if plan is None:
            self._plans.pop(name, None)
        else:
            self._plans[name] = plan
        if st is None:
            st = self.streams[tdef.stream] = StreamState(tdef=tdef, schema=msg["schema"],
                                                         renderer=renderer)
            self._by_name[name] = st
        else:
            if st.snapshot is not None and st.tdef.key != tdef.key:
                self.d.end_snapshot_tracking(st.snapshot)
                st.snapshot = None
            st.tdef, st.schema, st.renderer = tdef, msg["schema"], renderer

    def _begin_snapshot(self, st: StreamState, version: Any) -> None:
        self.wait()
        self.flush(st)
        if st.snapshot is not None:
            self.d.end_snapshot_tracking(st.snapshot)
        st.snapshot = self.d.begin_snapshot(st.tdef, version)
        self.d.commit()

    def on_activate_version(self, msg: dict, lineno: int) -> None:
        """Delete the rows not sent with this version (at the end, never emptied first)."""
        st = self.streams.get(msg.get("stream"))
        if st is None:
            raise MalformedInput(f"input line {lineno}: ACTIVATE_VERSION for stream "
                                 f"{msg.get('stream')!r} before its SCHEMA message")
        version = msg.get("version")
        self.wait()
        self.flush(st)
        snapshot = st.snapshot if st.snapshot is not None and st.snapshot.version == version \
            else None
        if st.snapshot is not None and snapshot is None:
            self.d.end_snapshot_tracking(st.snapshot)
        t0 = time.monotonic()
        try:
            deleted = self.d.finish_snapshot(st.tdef, snapshot)
        except Exception as exc:
            self.d.rollback()
            raise TargetError(f"{self.d.label(st.tdef)}: removing rows absent from the "
                              f"snapshot failed: {first_line(exc)}") from exc
        self.d.commit()
        st.db_seconds += time.monotonic() - t0
        st.deleted += deleted
        st.snapshot = None
        if deleted:
            self.log(f"{st.tdef.stream}: {deleted} rows not in snapshot version {version} "
                     "deleted")

    def on_state(self, value: Any) -> None:
        """Flush everything, write table_sync rows, commit, then print the state."""
        self.wait()
        for st in self.streams.values():
            self.flush(st)
        bookmarks = value.get("bookmarks") if isinstance(value, dict) else None
        if isinstance(bookmarks, dict):
            for name, st in self.streams.items():
                bm = bookmarks.get(name)
                if not isinstance(bm, dict) or not bm.get("timestamp"):
                    continue
                if bm == st.bookmark_written:
                    continue
                try:
                    meta.upsert_table_sync(self.d, st.tdef, str(bm["timestamp"]),
                                           bm.get("schema_version"))
                except ValueError as exc:
                    self.d.rollback()
                    raise MalformedInput(f"STATE bookmark of {name!r} has a bad timestamp "
                                         f"{bm.get('timestamp')!r}") from exc
        self.d.commit()
        if isinstance(bookmarks, dict):
            for name, st in self.streams.items():
                bm = bookmarks.get(name)
                if isinstance(bm, dict) and bm.get("timestamp"):
                    st.bookmark_written = dict(bm)
        self.last_state = value
        self.emit_state(value)

    # ----------------------------------------------------------------- flushing
    def wait(self) -> None:
        """Wait for the background flush (if any); re-raise its error here."""
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if self._worker_error is not None:
            error, self._worker_error = self._worker_error, None
            if isinstance(error, TargetError):
                raise error
            raise TargetError(f"loading a batch failed: {type(error).__name__}: "
                              f"{first_line(error)}") from error

    def flush_in_background(self, st: StreamState) -> None:
        """Flush + commit a full batch in a thread while the next batch is parsed.

        Only one flush runs at a time; every other database operation calls :meth:`wait`
        first, so the connection is never used by two threads at once.
        """
        self.wait()
        rows, st.rows, st.nbytes = st.rows, {}, 0

        def work() -> None:
            try:
                self._apply(st, rows)
                self.d.commit()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._worker_error = exc

        self._worker = threading.Thread(target=work, name="flush", daemon=True)
        self._worker.start()

    def flush(self, st: StreamState) -> None:
        """Apply the stream's pending batch (transaction left open for the caller)."""
        self.wait()
        if not st.rows:
            return
        rows, st.rows, st.nbytes = st.rows, {}, 0
        self._apply(st, rows)

    def _apply(self, st: StreamState, rows: dict) -> None:
        t0 = time.monotonic()
        result = self.d.load_batch(st.tdef, rows, st.snapshot)
        st.db_seconds += time.monotonic() - t0
        st.loaded += len(rows)
        st.inserted += result.inserted
        st.upserted += result.upserted
        st.deleted += result.deleted

    def finish(self) -> None:
        """End of input: flush, commit, emit the last state if not yet emitted, summary."""
        self.wait()
        for st in self.streams.values():
            self.flush(st)
        self.d.commit()
        if not self.state_emitted and self.last_state is not None:
            self.emit_state(self.last_state)
        self.summary()

    # ----------------------------------------------------------------- reporting
    def progress(self, force: bool = False) -> None:
        """Rows loaded per stream and rate, at most every few seconds."""
        now = time.monotonic()
        if not force and now < self._next_progress:
            return
        self._next_progress = now + PROGRESS_EVERY_SECONDS
        for st in self.streams.values():
            if st.received == st.last_progress_rows:
                continue
            st.last_progress_rows = st.received
            rate = st.received / max(now - st.started, 1e-9)
            self.log(f"{st.tdef.stream}: {st.received} rows received, {st.loaded} loaded "
                     f"({rate:,.0f} rows/s)")

    def summary(self) -> None:
        """Per-stream table on stderr."""
        if not self.streams:
            self.log("no streams in the input")
            return
        total = time.monotonic() - self.started
        header = f"{'stream':<40} {'received':>10} {'inserted':>10} {'upserted':>10} " \
                 f"{'deleted':>9} {'db s':>8}"
        self.log("summary (inserted = loaded into an empty table; upserted = inserted or "
                 "updated, not told apart)")
        self.log(header)
        for name, st in self.streams.items():
            self.log(f"{name:<40} {st.received:>10} {st.inserted:>10} {st.upserted:>10} "
                     f"{st.deleted:>9} {st.db_seconds:>8.2f}")
        received = sum(st.received for st in self.streams.values())
        self.log(f"{received} records in {total:.2f} s ({received / max(total, 1e-9):,.0f} rows/s)")
