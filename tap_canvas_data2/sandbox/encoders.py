"""Job results as DAP object files: JSONL / TSV / CSV, condensed or expanded, gzip, split.

File formats follow /work/shared/research/dap-protocol.md "Object files" and the client's own
documentation of ``Format``/``Mode``:

* TSV (PostgreSQL COPY text): header ``meta.ts``, ``meta.action`` (incremental only),
  ``key.<pk>``, ``value.<col>``...; NULL ``\\N``; escapes ``\\\\ \\b \\f \\n \\r \\t \\v``.
* CSV (RFC 4180): NULL is the unquoted literal ``NULL``, empty strings ``""``, strings quoted
  when special or equal to ``NULL``; an all-NULL nested object in condensed mode is a blank
  field (as the client's ``Mode`` docstring says).
* JSONL: ``{"key":{..},"value":{..},"meta":{"ts":..,"action":..}}``, NULL properties omitted,
  ``D`` records without ``value``. ``mode`` does not apply to JSONL.
* condensed: a nested object is one JSON column; expanded: ``value.<obj>.<member>`` columns.
  Arrays are JSON in both modes.

Each object repeats the header (every object is a standalone file), is at most
``rows_per_object`` rows, and is gzip-compressed with a fast level and a zero mtime, so equal
seeds give byte-identical objects.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

from .catalog import Column, TableDef
from .rows import RowGenerator, csv_value, fmt_ts, to_json, tsv_value
from .timeline import Plan

FORMATS = ("jsonl", "tsv", "csv")
MODES = ("condensed", "expanded")
GZIP_LEVEL = 1  # speed over size: objects are generated on demand and read from loopback


def header(table: TableDef, columns: list[Column], mode: str, incremental: bool) -> list[str]:
    """Field names of a TSV/CSV object."""
    names = ["meta.ts"] + (["meta.action"] if incremental else []) + [f"key.{table.key.name}"]
    for c in columns:
        if mode == "expanded":
            names.extend(n for n, _ in c.leaves(f"value.{c.name}"))
        else:
            names.append(f"value.{c.name}")
    return names


class _Writer:
    """Splits lines into gzip objects of at most ``rows_per_object`` lines."""

    def __init__(self, out_dir: Path, ext: str, head: str | None, rows_per_object: int):
        self.out_dir, self.ext, self.head, self.limit = out_dir, ext, head, rows_per_object
        self.paths: list[Path] = []
        self.first_part = 0
        self._f = None
        self._z = None
        self._n = 0

    def _open(self) -> None:
        p = self.out_dir / f"part-{self.first_part + len(self.paths):05d}.{self.ext}.gz"
        self.paths.append(p)
        self._f = open(p.with_suffix(".tmp"), "wb", buffering=1 << 20)
        # wbits 31: gzip wrapper; zlib writes mtime 0, so output depends on content only
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self._n = 0
        if self.head is not None:
            self._f.write(self._z.compress((self.head + "\n").encode("utf-8")))

    def _close(self) -> None:
        if self._f is not None:
            self._f.write(self._z.flush())
            self._f.close()
            os.replace(self.paths[-1].with_suffix(".tmp"), self.paths[-1])
            self._f = None

    def write(self, lines: list[str]) -> None:
        i = 0
        while i < len(lines):
            if self._f is None or self._n >= self.limit:
                self._close()
                self._open()
            take = lines[i:i + self.limit - self._n]
            self._f.write(self._z.compress(("\n".join(take) + "\n").encode("utf-8")))
            self._n += len(take)
            i += len(take)

    def finish(self) -> list[Path]:
        if not self.paths:
            self._open()  # an empty result is one object with only the header
        self._close()
        return self.paths


def write_objects(plan: Plan, gen: RowGenerator, table: TableDef, columns: list[Column],
                  fmt: str, mode: str, out_dir: Path, rows_per_object: int,
                  workers: int | None = None) -> list[Path]:
    """Encode the plan's records into ``out_dir/part-NNNNN.<fmt>.gz``; return the paths.

    Large snapshots are split by id range (one object per ``rows_per_object`` ids, so at most
    that many rows) and encoded by ``workers`` processes (default: every CPU, at most 4).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = min(os.cpu_count() or 1, 4)
    if not plan.incremental and workers > 1 and plan.max_n >= 2 * rows_per_object \
            and plan.max_n >= PARALLEL_MIN_ROWS:
        return _write_parallel(plan, gen, table, columns, fmt, mode, out_dir, rows_per_object,
                               workers)
    return _write_range(plan, gen, table, columns, fmt, mode, out_dir, rows_per_object)


PARALLEL_MIN_ROWS = 200_000  # below this, process start-up costs more than it saves


def _write_parallel(plan: Plan, gen: RowGenerator, table: TableDef, columns: list[Column],
                    fmt: str, mode: str, out_dir: Path, rows_per_object: int,
                    workers: int) -> list[Path]:
    """Encode id ranges in child processes, ``workers`` at a time.

    Plain subprocesses (``_worker.py``) rather than multiprocessing: fork is unsafe in the
    (threaded) server, and spawn/forkserver re-import the caller's ``__main__``, which breaks
    scripts without an ``if __name__ == "__main__"`` guard.
    """
    ranges = [(i, lo, min(lo + rows_per_object - 1, plan.max_n))
              for i, lo in enumerate(range(1, plan.max_n + 1, rows_per_object))]
    job_file = out_dir / "job.pickle"
    with open(job_file, "wb") as f:
        pickle.dump((plan, gen, table, columns, fmt, mode, out_dir, rows_per_object), f)
    procs = []
    for w in range(min(workers, len(ranges))):
        mine = [f"{i}:{lo}:{hi}" for i, lo, hi in ranges[w::workers]]
        procs.append(subprocess.Popen([sys.executable, "-m", f"{__package__}._worker",
                                      str(job_file), *mine]))
    codes = [p.wait() for p in procs]
    job_file.unlink()
    if any(codes):
        raise RuntimeError(f"object encoding worker failed (exit codes {codes})")
    ext = fmt
    return [out_dir / f"part-{i:05d}.{ext}.gz" for i, _, _ in ranges]


def _write_range(plan: Plan, gen: RowGenerator, table: TableDef, columns: list[Column],
                 fmt: str, mode: str, out_dir: Path, rows_per_object: int,
                 lo: int | None = None, hi: int | None = None,
                 first_part: int = 0) -> list[Path]:
    """Encode the records with offsets in [lo, hi] (all when None) as parts from first_part."""
    incr = plan.incremental
    if fmt == "jsonl":
        w = _Writer(out_dir, "jsonl", None, rows_per_object)
        line_fn = _jsonl_lines(gen, table, columns)
    else:
        sep = "\t" if fmt == "tsv" else ","
        names = header(table, columns, mode, incr)
        one = tsv_value if fmt == "tsv" else csv_value
        w = _Writer(out_dir, fmt, sep.join(one(n) for n in names), rows_per_object)
        line_fn = _table_lines(gen, table, columns, fmt, mode, sep)
    w.first_part = first_part
    for offs, revs, tss, acts in plan.records(lo=lo, hi=hi):
        w.write(line_fn(offs, revs, tss, acts))
    return w.finish()


_TS_CACHE: dict[int, str] = {}


def _ts_strings(tss: list[int]) -> list[str]:
    cache = _TS_CACHE
    if len(cache) > 200_000:
        cache.clear()
    out = []
    for t in tss:
        s = cache.get(t)
        if s is None:
            s = cache[t] = fmt_ts(t)
        out.append(s)
    return out


def _column_values(gen: RowGenerator, columns: list[Column], kind: str, hs: list[int],
                   tss: list[int], null: Callable[[Column], str]) -> list[list[str]]:
    """Column-wise pool look-ups: one list comprehension per column is the fast path."""
    cols = []
    for c in columns:
        enc, n, off = gen.encoded(c, kind)
        if c.added_at is None:
            cols.append([enc[(h + off) % n] for h in hs])
        else:  # rows last written before the column existed carry NULL in it
            a, nul = c.added_at, null(c)
            cols.append([enc[(h + off) % n] if t >= a else nul
                         for h, t in zip(hs, tss, strict=False)])
    return cols


def _table_lines(gen: RowGenerator, table: TableDef, columns: list[Column], fmt: str,
                 mode: str, sep: str):
    kind = fmt + ("_x" if mode == "expanded" else "")
    null_word = "\\N" if fmt == "tsv" else "NULL"

    def null(c: Column) -> str:
        if c.kind == "object":
            if mode == "expanded":
                return sep.join([null_word] * len(c.properties or []))
            if fmt == "csv":
                return ""
        return null_word

    d_values = sep.join(null(c) for c in columns)
    base = table.id_base

    def lines(offs, revs, tss, acts):
        hs = gen.hashes(offs, revs)
        ts_s = _ts_strings(tss)
        ids = [str(base + o) for o in offs]
        cols = _column_values(gen, columns, kind, hs, tss, null)
        if acts is None:
            return list(map(sep.join, zip(ts_s, ids, *cols, strict=False)))
        out = list(map(sep.join, zip(ts_s, acts, ids, *cols, strict=False)))
        for i, a in enumerate(acts):
            if a == "D":  # a delete carries only its key; every value is NULL
                out[i] = sep.join((ts_s[i], "D", ids[i], d_values)) if columns else \
                    sep.join((ts_s[i], "D", ids[i]))
        return out

    return lines


def _jsonl_lines(gen: RowGenerator, table: TableDef, columns: list[Column]):
    key_prefix = '{"key":{' + to_json(table.key.name) + ":"
    base = table.id_base

    def lines(offs, revs, tss, acts):
        hs = gen.hashes(offs, revs)
        ts_s = _ts_strings(tss)
        cols = _column_values(gen, columns, "json", hs, tss, lambda c: "")
        out = []
        rows = zip(*cols, strict=False) if cols else iter([()] * len(offs))
        for i, frags in enumerate(rows):
            o = offs[i]
            if acts is None:
                meta = '"meta":{"ts":"' + ts_s[i] + '"}}'
            elif acts[i] == "D":
                out.append(f'{key_prefix}{base + o}}},"meta":{{"ts":"{ts_s[i]}","action":"D"}}}}')
                continue
            else:
                meta = '"meta":{"ts":"' + ts_s[i] + '","action":"U"}}'
            value = ",".join([f for f in frags if f])
            out.append(f"{key_prefix}{base + o}}},\"value\":{{{value}}},{meta}")
        return out

    return lines


class ResultCache:
    """Generated objects on disk, keyed by everything that determines their bytes."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._done: dict[str, list[Path]] = {}

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:24]

    def get(self, key: str) -> list[Path] | None:
        return self._done.get(key)

    def produce(self, key: str, make: Callable[[Path], list[Path]]) -> list[Path]:
        """Return cached paths, or run ``make(dir)`` once (concurrent callers wait)."""
        with self._lock:
            if key in self._done:
                return self._done[key]
            kl = self._key_locks.setdefault(key, threading.Lock())
        with kl:
            if key in self._done:
                return self._done[key]
            out = self.data_dir / key
            if out.exists():
                for p in out.iterdir():
                    p.unlink()
            paths = make(out)
            with self._lock:
                self._done[key] = paths
            return paths

