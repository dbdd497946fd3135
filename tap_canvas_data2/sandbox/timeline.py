"""Per-table change history: an initial commit, then commits of inserts/updates/deletes.

Memory stays small for tables of millions of rows: rows are never stored. A table keeps
``max_n`` (ids are ``id_base + 1 .. id_base + max_n``) and, only for ids changed after the
initial commit, their history ``[(commit ts, deleted), ...]``. A row version is identified by
``(offset, revision)`` where revision = number of changes so far (0 = as initially committed),
and its values come from :mod:`.rows`.

Window semantics (docs/architecture.md): a change committed at ``ts`` belongs to
``(since, until]``; ``until`` defaults to (and is capped at) the table's latest commit; a
snapshot's ``at`` is the latest commit. Chaining ``at``/``until`` into the next ``since``
never repeats nor skips a change. Incremental results are consolidated: one record per key,
its state at ``until`` (``U`` with the full row, or ``D`` when deleted at ``until``).

All times are integers: µs since the epoch, on a *data clock* that starts at a fixed date and
moves a fixed step per commit, so that results are deterministic and tests are fast.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from .rows import parse_ts  # noqa: F401  (re-exported for callers handling request times)

#: 2025-01-06T08:00:00.123456Z: the initial commit of every table.
DEFAULT_START_US = 1736150400 * 1_000_000 + 123456
#: each later commit is 1 min 0.123457 s after the previous one (always a fraction).
DEFAULT_STEP_US = 60_123_457

CHUNK = 20_000  # rows per batch handed to the encoders


class WindowError(Exception):
    """Base of the incremental-query errors; ``since``/``until`` are the permitted range."""

    kind = "WindowError"

    def __init__(self, message: str, since: int, until: int | None):
        super().__init__(message)
        self.since = since
        self.until = until


class OutOfRange(WindowError):
    kind = "OutOfRangeError"


class SnapshotRequired(WindowError):
    kind = "SnapshotRequiredError"


@dataclass
class TableState:
    """Mutable history of one table (guarded by the Sandbox lock)."""

    id_base: int
    initial_n: int
    initial_ts: int
    max_n: int = 0
    history: dict[int, list[tuple[int, bool]]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    commits: list[int] = field(default_factory=list)
    reloaded_at: int | None = None
    horizon: int | None = None

    @property
    def latest(self) -> int:
        return self.commits[-1]

    def live_count(self) -> int:
        return self.max_n - len(self.deleted)


@dataclass
class Plan:
    """A frozen view of the records of one query (safe to encode outside the lock).

    ``records()`` yields batches ``(offsets, revisions, timestamps, actions)``; ``actions`` is
    None for snapshots, else a list of "U"/"D".
    """

    incremental: bool
    initial_n: int
    initial_ts: int
    max_n: int
    history: dict[int, tuple[tuple[int, bool], ...]]
    since: int | None
    until: int  # snapshot: at
    candidates: list[int] | None = None  # incremental without the initial commit: changed ids

    def records(self, chunk: int = CHUNK, lo: int | None = None, hi: int | None = None
                ) -> Iterator[tuple[list[int], list[int], list[int], list[str] | None]]:
        """Batches of records; a snapshot can be limited to offsets ``lo..hi`` (inclusive)."""
        if not self.incremental:
            yield from self._snapshot(chunk, lo or 1, self.max_n if hi is None else hi)
        else:
            assert lo is None and hi is None, "incrementals are encoded in one piece"
            yield from self._incremental(chunk)

    def _snapshot(self, chunk: int, lo: int, hi: int):
        hist = self.history
        t0 = self.initial_ts
        for start in range(lo, hi + 1, chunk):
            stop = min(start + chunk, hi + 1)
            if not hist:
                offs = list(range(start, stop))
                yield offs, [0] * len(offs), [t0] * len(offs), None
                continue
            offs, revs, tss = [], [], []
            for o in range(start, stop):
                h = hist.get(o)
                if h is None:
                    offs.append(o)
                    revs.append(0)
                    tss.append(t0)
                elif not h[-1][1]:
                    offs.append(o)
                    revs.append(len(h))
                    tss.append(h[-1][0])
            if offs:
                yield offs, revs, tss, None

    def _incremental(self, chunk: int):
        since, until = self.since, self.until
        assert since is not None
        hist = self.history
        with_initial = since < self.initial_ts <= until
        source = range(1, self.max_n + 1) if with_initial else (self.candidates or [])
        offs: list[int] = []
        revs: list[int] = []
        tss: list[int] = []
        acts: list[str] = []
        for o in source:
            h = hist.get(o)
            if h is None:
                if o > self.initial_n:
                    continue
                rev, ts, dele = 0, self.initial_ts, False  # only when the initial commit is in
            else:
                upto = [e for e in h if e[0] <= until]
                if not upto:
                    if o > self.initial_n:
                        continue  # inserted after until
                    rev, ts, dele = 0, self.initial_ts, False
                else:
                    rev, (ts, dele) = len(upto), upto[-1]
                if not with_initial and ts <= since:
                    continue
            offs.append(o)
            revs.append(rev)
            tss.append(ts)
            acts.append("D" if dele else "U")
            if len(offs) >= chunk:
                yield offs, revs, tss, acts
                offs, revs, tss, acts = [], [], [], []
        if offs:
            yield offs, revs, tss, acts


class Timeline:
    """The change history of every table of a sandbox (not thread-safe: callers lock)."""

    def __init__(self, seed: int, start_us: int = DEFAULT_START_US,
                 step_us: int = DEFAULT_STEP_US, retention_us: int | None = None):
        self.seed = seed
        self.clock = start_us
        self.start_us = start_us
        self.step_us = step_us
        self.retention_us = retention_us
        self.tables: dict[tuple[str, str], TableState] = {}

    def add_table(self, ns: str, table: str, id_base: int, rows: int) -> TableState:
        st = TableState(id_base=id_base, initial_n=rows, initial_ts=self.start_us, max_n=rows,
                        commits=[self.start_us])
        self.tables[(ns, table)] = st
        return st

    def get(self, ns: str, table: str) -> TableState:
        return self.tables[(ns, table)]

    def tick(self) -> int:
        """The next commit time (strictly later than any before, shared by all tables)."""
        self.clock += self.step_us
        return self.clock

    # --- changes ----------------------------------------------------------------------------
    def advance(self, ns: str, table: str, inserts: int = 0, updates: int = 0, deletes: int = 0,
                update_ids: list[int] | None = None, delete_ids: list[int] | None = None) -> int:
        """Commit inserts (new ids), updates and deletes of live rows; return the commit ts.

        Rows to update/delete are drawn at random (seeded per commit) unless given as ids.
        """
        st = self.get(ns, table)
        rng = random.Random(f"{self.seed}/{ns}/{table}/commit/{len(st.commits)}")
        upd = [self._offset(st, i) for i in (update_ids or [])]
        dele = [self._offset(st, i) for i in (delete_ids or [])]
        if set(upd) & set(dele):
            raise ValueError("an id cannot be both updated and deleted in one commit")
        taken = set(upd) | set(dele)
        need = max(0, updates - len(upd)) + max(0, deletes - len(dele))
        if need > st.live_count() - len(taken):
            raise ValueError(f"{ns}.{table} has only {st.live_count()} live rows")
        extra_upd = max(0, updates - len(upd))
        picked = self._pick(st, rng, need, taken)
        rng.shuffle(picked)  # else updates would always hit lower ids than deletes
        upd += picked[:extra_upd]
        dele += picked[extra_upd:]
        ts = self.tick()
        for o in upd:
            st.history.setdefault(o, []).append((ts, False))
        for o in dele:
            st.history.setdefault(o, []).append((ts, True))
            st.deleted.add(o)
        for _ in range(inserts):
            st.max_n += 1
            st.history[st.max_n] = [(ts, False)]
        st.commits.append(ts)
        return ts

    def reload(self, ns: str, table: str) -> int:
        """DAP reloaded the table: incrementals from before now need a new snapshot."""
        st = self.get(ns, table)
        ts = self.tick()
        st.commits.append(ts)
        st.reloaded_at = ts
        return ts

    def expire_history(self, ns: str, table: str, before: int | None = None) -> int:
        """Move the retention horizon: incrementals with ``since`` older fail OutOfRange."""
        st = self.get(ns, table)
        st.horizon = st.latest if before is None else before
        return st.horizon

    @staticmethod
    def _offset(st: TableState, id_: int) -> int:
        o = int(id_) - st.id_base
        if not 1 <= o <= st.max_n or o in st.deleted:
            raise ValueError(f"id {id_} is not a live row")
        return o

    @staticmethod
    def _pick(st: TableState, rng: random.Random, n: int, taken: set[int]) -> list[int]:
        """n distinct live offsets not in ``taken``, sorted (rejection sampling; dense tables
        of millions of rows never need a list of live ids)."""
        if n == 0:
            return []
        out: set[int] = set()
        if (st.live_count() - len(taken)) > 2 * n:
            while len(out) < n:
                o = rng.randint(1, st.max_n)
                if o not in st.deleted and o not in taken:
                    out.add(o)
        else:
            live = [o for o in range(1, st.max_n + 1) if o not in st.deleted and o not in taken]
            out = set(rng.sample(live, n))
        return sorted(out)

    # --- queries ----------------------------------------------------------------------------
    def snapshot(self, ns: str, table: str) -> Plan:
        st = self.get(ns, table)
        return Plan(incremental=False, initial_n=st.initial_n, initial_ts=st.initial_ts,
                    max_n=st.max_n, history={o: tuple(h) for o, h in st.history.items()},
                    since=None, until=st.latest)

    def horizon(self, st: TableState) -> int | None:
        hs = [h for h in (st.horizon,) if h is not None]
        if self.retention_us is not None:
            hs.append(st.latest - self.retention_us)
        return max(hs) if hs else None

    def incremental(self, ns: str, table: str, since: int, until: int | None) -> Plan:
        """Plan of the changes in (since, until]; raises SnapshotRequired / OutOfRange."""
        st = self.get(ns, table)
        if st.reloaded_at is not None and since < st.reloaded_at:
            raise SnapshotRequired(
                "table was reloaded at a later point in time than the requested since; "
                "a new snapshot is required", st.reloaded_at, st.latest)
        hz = self.horizon(st)
        if hz is not None and since < hz:
            raise OutOfRange("since is older than the retention period of this table", hz,
                             st.latest)
        end = st.latest if until is None else min(until, st.latest)
        end = max(end, since)  # a since past the latest commit: empty window, chains onwards
        cands = None
        if not since < st.initial_ts <= end:
            cands = sorted(o for o, h in st.history.items()
                           if any(since < ts <= end for ts, _ in h))
        hist = {o: tuple(st.history[o]) for o in (cands or [])} if cands is not None else \
            {o: tuple(h) for o, h in st.history.items()}
        return Plan(incremental=True, initial_n=st.initial_n, initial_ts=st.initial_ts,
                    max_n=st.max_n, history=hist, since=since, until=end, candidates=cands)
