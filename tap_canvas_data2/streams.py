"""One Singer stream per DAP table, with a fast RECORD emission path.

Sync of one table (``DapTableStream.sync``):

1. decide the query: no bookmark -> snapshot (or, with the ``since`` setting, an incremental
   query from ``since``); bookmark -> incremental query since the bookmark's timestamp;
   ``full_refresh`` -> snapshot. An incremental query refused with SnapshotRequired or
   OutOfRange is replaced by a snapshot (one WARNING line);
2. run the job (the API client waits for it); if DAP answered with another schema version
   than discovery saw, fetch the schema again;
3. SCHEMA (current DAP schema, deselected columns removed);
4. RECORDs: every row of every object of the job. ``U`` -> full row; ``D`` -> key +
   ``_sdc_deleted_at`` (= ``meta.ts``); snapshot records carry ``version``;
5. snapshot: ACTIVATE_VERSION; then STATE with ``bookmarks[stream] = {timestamp,
   schema_version}`` where timestamp is the job's ``at`` (snapshot) or ``until``.

Fast path: RECORD lines are built as bytes (a constant prefix, ``orjson.dumps(row)``, a
constant suffix; a whole parsed batch joined at once) and appended to the tap's single
output buffer, flushed about every MiB. SCHEMA/ACTIVATE_VERSION/STATE go through the same
buffer, so order is kept. With stream maps or flattening configured, records go through
the SDK's per-record path instead (mapping, conformance), same messages otherwise.
"""

from __future__ import annotations

import datetime
import logging
import time
import typing as t
from operator import itemgetter

import orjson
from singer_sdk.streams import Stream

from tap_canvas_data2 import schema as dap_schema
from tap_canvas_data2._output import FLUSH_BYTES, OUTPUT

if t.TYPE_CHECKING:
    from tap_canvas_data2.tap import TapCanvasData2

DELETED_AT = dap_schema.DELETED_AT
PROGRESS_SECONDS = 10.0  # how often a long table logs its progress


class _Progress:
    """Logs rows, objects and rate of a running table every PROGRESS_SECONDS (stderr)."""

    def __init__(self, logger: logging.Logger, name: str, n_objects: int) -> None:
        self.logger, self.name, self.n_objects = logger, name, n_objects
        self.started = self.last = time.perf_counter()

    def tick(self, rows: int, objects_done: int | None = None) -> None:
        """Log if PROGRESS_SECONDS passed; ``objects_done`` = objects finished, if known."""
        now = time.perf_counter()
        if now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        where = (f", object {min(objects_done + 1, self.n_objects)} of {self.n_objects}"
                 if objects_done is not None else f", {self.n_objects} objects")
        self.logger.info("%s: %d rows so far%s, %.0f rows/s", self.name, rows, where,
                         rows / (now - self.started))


_row_of = itemgetter(2)
_action_of = itemgetter(0)


def to_dap_timestamp(value: t.Any) -> str:
    """A setting value (str/datetime) as a DAP timestamp: ``YYYY-MM-DDThh:mm:ss[.f]Z`` UTC."""
    if isinstance(value, datetime.datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    dt = dt.astimezone(datetime.timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return dt.strftime(fmt)


def to_epoch_ms(value: str) -> int:
    """A DAP timestamp as integer epoch milliseconds (the snapshot's table version)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp() * 1000)


class DapTableStream(Stream):
    """A DAP table as a Singer stream named ``<namespace>-<table>``."""

    def __init__(
        self,
        tap: TapCanvasData2,
        *,
        namespace: str,
        table: str,
        dap_schema: dict,
        schema_version: int,
    ) -> None:
        self.namespace = namespace
        self.table = table
        self.dap_schema = dap_schema
        self.schema_version = int(schema_version)
        singer = _singer_schema(dap_schema, namespace, table, self.schema_version)
        super().__init__(tap=tap, schema=singer, name=_stream_name(namespace, table))
        self.primary_keys = dap_schema_key_columns(dap_schema)
        self.forced_replication_method = "INCREMENTAL"
        self._tap_ref = tap

    # ------------------------------------------------------------------ schema

    def _set_dap_schema(self, schema: dict, version: int) -> None:
        self.dap_schema = schema
        self.schema_version = int(version)
        self._schema = _singer_schema(schema, self.namespace, self.table, self.schema_version)
        self.primary_keys = dap_schema_key_columns(schema)

    def apply_catalog(self, catalog: t.Any) -> None:
        """Take selection from the catalog but keep the current DAP schema (the catalog's
        schema may be from an older schema version)."""
        super().apply_catalog(catalog)
        self._input_schema = None
        self.primary_keys = dap_schema_key_columns(self.dap_schema)

    def _deselected_columns(self) -> list[str]:
        mask = self.mask
        keys = set(self.primary_keys or ())
        return [
            name
            for name in self.schema["properties"]
            if name not in keys
            and name != DELETED_AT
            and mask.get(("properties", name), True) is False
        ]

    def _selected_schema(self, deselected: list[str]) -> dict:
        return dap_schema.select_columns(self.schema, deselected)

    def _register_schema(self, selected_schema: dict) -> None:
        """Make the SDK's stream maps (SCHEMA messages, fallback path) use ``selected_schema``."""
        mapper = getattr(self._tap, "_mapper", None)
        if mapper is not None:
            mapper.register_raw_stream_schema(self.name, selected_schema, list(self.primary_keys))
        self._stream_maps = None

    # ------------------------------------------------------------------ state

    @property
    def bookmark(self) -> dict:
        return dict((self.tap_state.get("bookmarks") or {}).get(self.name) or {})

    def _set_bookmark(self, timestamp: str, schema_version: int) -> None:
        bookmarks = self.tap_state.setdefault("bookmarks", {})
        bookmarks[self.name] = {"timestamp": timestamp, "schema_version": int(schema_version)}
        self._tap.write_state_now()  # type: ignore[attr-defined]
        self.state_manager.is_flushed = True

    def finalize_state_progress_markers(self, state: dict | None = None) -> None:
        """Nothing to finalize: the bookmark is written once, after the job's records."""

    # ------------------------------------------------------------------ sync

    @property
    def fast_path(self) -> bool:
        """False when stream maps or flattening are configured (SDK per-record path)."""
        cfg = self.config
        if cfg.get("stream_maps"):
            return False
        if cfg.get("flattening_enabled"):
            return False
        return True

    def sync(self, context: dict | None = None) -> None:  # type: ignore[override]
        """Sync the table: job, SCHEMA, RECORDs, [ACTIVATE_VERSION], STATE."""
        tap = self._tap
        dap = tap.dap  # type: ignore[attr-defined]
        cfg = self.config
        fmt = str(cfg.get("format") or "tsv")
        bookmark = self.bookmark
        since_setting = cfg.get("since")
        until = to_dap_timestamp(cfg["until"]) if cfg.get("until") else None

        snapshot = True
        since: str | None = None
        reason = "no bookmark"
        if cfg.get("full_refresh"):
            reason = "full_refresh"
        elif bookmark.get("timestamp"):
            snapshot, since = False, str(bookmark["timestamp"])
        elif since_setting:
            snapshot, since = False, to_dap_timestamp(since_setting)

        job = None
        if not snapshot:
            from tap_canvas_data2.api.errors import (  # noqa: PLC0415
                OutOfRangeError,
                SnapshotRequiredError,
            )

            self.logger.info(
                "%s: incremental query since %s%s", self.name, since,
                f" until {until}" if until else "",
            )
            try:
                job = dap.incremental(self.namespace, self.table, since, until, fmt)
            except (SnapshotRequiredError, OutOfRangeError) as exc:
                kind = "SnapshotRequired" if isinstance(exc, SnapshotRequiredError) else (
                    "OutOfRange")
                self.logger.warning(
                    "%s.%s: DAP refused the incremental query since %s (%s); taking a new "
                    "snapshot that replaces the table (ACTIVATE_VERSION)",
                    self.namespace, self.table, since, kind,
                )
                snapshot, reason = True, kind
        if snapshot:
            self.logger.info("%s: snapshot (%s)", self.name, reason)
            job = dap.snapshot(self.namespace, self.table, fmt)

        assert job is not None
        self.logger.info("%s: job %s complete: %d objects", self.name, job.id, len(job.objects))
        self._progress = _Progress(self.logger, self.name, len(job.objects))
        job_version = job.schema_version
        if job_version is not None and int(job_version) != self.schema_version:
            schema, version = dap.get_schema(self.namespace, self.table)
            self.logger.info(
                "%s: schema version changed from %s to %s during the run",
                self.name, self.schema_version, version,
            )
            self._set_dap_schema(schema, version)

        deselected = self._deselected_columns()
        selected_schema = self._selected_schema(deselected)
        self._register_schema(selected_schema)

        version = to_epoch_ms(job.at) if snapshot else None
        self._stream_version = version
        self._write_schema_message()

        started = time.perf_counter()
        if self.fast_path and fmt == "tsv" and self.ABORT_AT_RECORD_COUNT is None:
            batches = dap.iter_object_bytes(job)
        else:
            batches = dap.iter_batches(job, self.dap_schema, fmt)
        try:
            if self.fast_path and fmt == "tsv" and self.ABORT_AT_RECORD_COUNT is None:
                counts = self._emit_tsv(batches, version, deselected)
            elif self.fast_path:
                counts = self._emit_fast(batches, version, deselected)
            else:
                counts = self._emit_sdk(batches)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        OUTPUT.flush()
        elapsed = time.perf_counter() - started

        n_up, n_del, aborted = counts
        total = n_up + n_del
        self.logger.info(
            "%s: %d records (%d upserts, %d deletes) in %.2f s (%.0f records/s)%s",
            self.name, total, n_up, n_del, elapsed, total / elapsed if elapsed else 0.0,
            " [stopped at the record limit]" if aborted else "",
        )
        if aborted:
            # a partial job: no ACTIVATE_VERSION, no new bookmark
            self._tap.write_state_now()  # type: ignore[attr-defined]
            return

        if snapshot:
            self._write_activate_version_message(version)  # type: ignore[arg-type]
            timestamp = job.at
        else:
            timestamp = job.until
        self._set_bookmark(
            timestamp, int(job_version) if job_version is not None else self.schema_version
        )

    # ------------------------------------------------------------------ emission

    def _emit_fast(
        self,
        batches: t.Iterable[list[tuple[str, str, dict]]],
        version: int | None,
        deselected: list[str],
    ) -> tuple[int, int, bool]:
        """Append RECORD lines for every parsed record to the output buffer."""
        out = OUTPUT
        buf = out.buf
        dumps = orjson.dumps
        prefix = b'{"type":"RECORD","stream":' + orjson.dumps(self.name) + b',"record":'
        suffix = b"}\n" if version is None else b',"version":' + str(version).encode() + b"}\n"
        sep = suffix + prefix
        drop = tuple(deselected)
        limit = self.ABORT_AT_RECORD_COUNT
        n_up = n_del = 0
        aborted = False
        for batch in batches:
            if not batch:
                continue
            if limit is not None and n_up + n_del + len(batch) > limit:
                batch = batch[: max(0, limit - n_up - n_del)]
                aborted = True
            rows = list(map(_row_of, batch))
            if version is None:  # incremental: deletes carry key + _sdc_deleted_at
                actions = list(map(_action_of, batch))
                deletes = actions.count("D")
                i = -1
                for _ in range(deletes):
                    i = actions.index("D", i + 1)
                    rows[i][DELETED_AT] = batch[i][1]
            else:
                deletes = 0
            if drop:
                for row in rows:
                    if DELETED_AT not in row:
                        for name in drop:
                            row.pop(name, None)
            n_del += deletes
            n_up += len(rows) - deletes
            if rows:
                buf += prefix
                buf += sep.join(map(dumps, rows))
                buf += suffix
            if len(buf) >= FLUSH_BYTES:
                out.flush()
                self._progress.tick(n_up + n_del)
            if aborted:
                break
        return n_up, n_del, aborted

    def _emit_tsv(
        self,
        objects: t.Iterable[tuple[str, t.Iterable[bytes]]],
        version: int | None,
        deselected: list[str],
    ) -> tuple[int, int, bool]:
        """TSV objects straight to RECORD lines (no dict per row), see _tsvjson."""
        from tap_canvas_data2._tsvjson import TsvRecordWriter  # noqa: PLC0415

        writer = TsvRecordWriter(self.name, self.dap_schema, version, deselected, DELETED_AT)
        out = OUTPUT
        buf = out.buf
        progress = self._progress
        for done, (_oid, chunks) in enumerate(objects):
            for lines in writer.object_lines(chunks):
                buf += lines
                if len(buf) >= FLUSH_BYTES:
                    out.flush()
                    progress.tick(writer.n_upserts + writer.n_deletes, done)
        return writer.n_upserts, writer.n_deletes, False

    def _emit_sdk(self, batches: t.Iterable[list[tuple[str, str, dict]]]) -> tuple[int, int, bool]:
        """SDK per-record path (stream maps, flattening, type conformance)."""
        limit = self.ABORT_AT_RECORD_COUNT
        n_up = n_del = 0
        for batch in batches:
            for action, ts, row in batch:
                if limit is not None and n_up + n_del >= limit:
                    return n_up, n_del, True
                if action == "D":
                    row[DELETED_AT] = ts
                    n_del += 1
                else:
                    n_up += 1
                self._write_record_message(row)
        return n_up, n_del, False

    def get_records(self, context: dict | None) -> t.Iterable[dict]:
        """Not used: :meth:`sync` drives the job and the emission."""
        return iter(())


def _stream_name(namespace: str, table: str) -> str:
    return dap_schema.stream_name(namespace, table)


def _singer_schema(schema: dict, namespace: str, table: str, version: int) -> dict:
    return dap_schema.to_singer_schema(
        schema, namespace=namespace, table=table, schema_version=version
    )


def dap_schema_key_columns(schema: dict) -> list[str]:
    return dap_schema.key_columns(schema)


logging.getLogger(__name__).addHandler(logging.NullHandler())
