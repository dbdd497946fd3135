"""Crash safety: SIGKILL the target, and separately the tap, at random moments of a
200,000-row snapshot and of incremental syncs; rerun from the last STATE the target printed
(possibly none); the database must then equal the expected state, every time.

Affordable by construction: one sandbox with a 200k-row table (11 columns, objects
pre-generated once); kill moments drawn uniformly within the measured duration of an
uninterrupted run; after every group of kills (one of the target, one of the tap, in random
order, the second one during the rerun after the first) a rerun completes and the table is
compared by a digest computed in the database (count + hash of every row) with a reference
database that is fed the same changes by uninterrupted runs and that is itself compared
row by row with the sandbox's `expected_rows`. Replay a failure with the printed seed
(RELIABILITY_SEED=<seed>).
"""

from __future__ import annotations

import os
import random
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tap_canvas_data2.sandbox import Sandbox
from tests.helpers import db_compare as dbc
from tests.helpers.databases import database
from tests.reliability.util import (
    Pipe,
    PipeResult,
    assert_table_equals_sandbox,
    run_pipe,
    tap_config,
)

NS, TABLE = "canvas", "enrollment_terms"
STREAM = f"{NS}-{TABLE}"
ROWS = 200_000
SEED = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(1, 10**6))


@pytest.fixture(scope="module")
def sb():
    with Sandbox(seed=31, rows={TABLE: ROWS}, rows_per_object=50_000) as s:
        s.pregenerate(NS, TABLE)
        yield s


def digest(url: str) -> tuple[int, str]:
    """(rows, hash of all rows) of the replicated table, computed by the database."""
    dialect = dbc.dialect_of(url)
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        if dialect == "postgresql":
            cur.execute(f"SELECT count(*), count(DISTINCT id), md5(string_agg(t::text, "
                        f"E'\\n' ORDER BY id)) FROM {NS}.{TABLE} t")
            n, distinct, h = cur.fetchone()
        else:
            cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE "
                        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY "
                        "ORDINAL_POSITION", (f"{NS}__{TABLE}",))
            cols = [c[0] if isinstance(c[0], str) else c[0].decode() for c in cur.fetchall()]
            row = "CONCAT_WS('|', " + ", ".join(
                f"COALESCE(CAST(`{c}` AS CHAR), '\\\\N')" for c in cols) + ")"
            cur.execute(f"SELECT COUNT(*), COUNT(DISTINCT id), SUM(CONV(SUBSTR(MD5({row}), 1, "
                        f"15), 16, 10)), BIT_XOR(CRC32({row})) FROM `{NS}__{TABLE}`")
            n, distinct, s1, s2 = cur.fetchone()
            h = f"{s1}:{s2}"
        cur.close()
    assert n == distinct, f"{n - distinct} duplicate key(s)"
    return int(n), str(h)


def bookmark(state: dict | None) -> str | None:
    return (((state or {}).get("bookmarks") or {}).get(STREAM) or {}).get("timestamp")


def killed_run(tmp: Path, sb, url: str, state: dict | None, who: str, at: float,
               log: list[str]) -> PipeResult:
    pipe = Pipe(tmp, tap_config(sb, tables=[TABLE]), {"connection_string": url}, state)
    try:
        deadline = pipe.started + at
        while pipe.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = pipe.running()
        pipe.kill(who)
        r = pipe.wait(180)
    finally:
        pipe.close()
    log.append(f"kill {who} at {at:.2f}s ({'killed' if alive else 'already finished'}); "
               f"exit tap={r.tap_rc} target={r.target_rc}; {len(r.states)} STATE(s)")
    # the killed process says nothing more; the survivor ends cleanly or with one line
    for name, rc, err in (("tap", r.tap_rc, r.tap_stderr),
                          ("target", r.target_rc, r.target_stderr)):
        if name != who and rc:
            assert "Traceback" not in err, f"{log[-1]}\n{r.describe()}"
    return r


def crash_group(tmp: Path, sb, url: str, state: dict | None, rng: random.Random,
                duration: float, log: list[str]) -> dict:
    """Kill the target and the tap once each (random order and moments, the second during
    the rerun after the first), then rerun to completion. Returns the final state."""
    kinds = ["target", "tap"]
    rng.shuffle(kinds)
    for who in kinds:
        at = rng.uniform(0.0, duration)
        r = killed_run(tmp, sb, url, state, who, at, log)
        if r.last_state is not None:
            assert bookmark(r.last_state) is not None
            state = r.last_state
    r = run_pipe(tmp, tap_config(sb, tables=[TABLE]), {"connection_string": url}, state)
    assert r.ok, "\n".join(log) + "\n" + r.describe()
    return r.last_state


def _check_meta(url: str, state: dict) -> None:
    rows = [m for m in dbc.meta_rows(url) if m["source_table"] == TABLE]
    assert len(rows) == 1, rows
    expected = dbc.format_datetime(dbc.parse_datetime(bookmark(state)))
    got = rows[0]["timestamp"]
    if dbc.dialect_of(url) == "mysql":  # dap keeps second precision there
        expected, got = expected[:19], got[:19]
    assert got == expected, (rows[0], state)


@pytest.mark.slow
@pytest.mark.parametrize("dialect,snapshot_groups,incremental_groups", [
    ("postgresql", 10, 10),
    ("mysql", 2, 2),
], ids=["postgresql", "mysql"])
def test_kill_9_snapshot_and_incremental(sb, tmp_path, dialect, snapshot_groups,
                                         incremental_groups):
    seed = SEED + (0 if dialect == "postgresql" else 1)
    rng = random.Random(seed)
    log: list[str] = [f"seed={seed} (replay: RELIABILITY_SEED={SEED})"]
    print(log[0])
    tmp = tmp_path
    with ExitStack() as stack:
        ref = stack.enter_context(database(dialect, str(tmp)))
        crash = stack.enter_context(database(dialect, str(tmp)))

        # the reference: an uninterrupted snapshot, compared row by row with the sandbox
        r = run_pipe(tmp, tap_config(sb, tables=[TABLE]), {"connection_string": ref})
        assert r.ok, r.describe()
        snap_duration, ref_state = r.seconds, r.last_state
        assert_table_equals_sandbox(ref, sb, NS, TABLE, label="reference snapshot")
        expected = digest(ref)  # (the other dialect's run may have advanced the table)
        assert expected[0] == sb.service.state()[f"{NS}.{TABLE}"]["live_rows"] >= ROWS

        # --- snapshot: each group starts from an empty database
        for g in range(snapshot_groups):
            log.append(f"snapshot group {g}")
            with database(dialect, str(tmp)) as fresh:
                state = crash_group(tmp, sb, fresh, None, rng, snap_duration, log)
                assert digest(fresh) == expected, "\n".join(log)
                _check_meta(fresh, state)
            print("\n".join(log[-3:]))

        # --- incremental: the crash database starts from an uninterrupted snapshot
        r = run_pipe(tmp, tap_config(sb, tables=[TABLE]), {"connection_string": crash})
        assert r.ok, r.describe()
        crash_state = r.last_state
        for g in range(incremental_groups):
            log.append(f"incremental group {g}")
            sb.advance(NS, TABLE, inserts=rng.randint(5_000, 15_000),
                       updates=rng.randint(10_000, 30_000), deletes=rng.randint(2_000, 8_000))
            r = run_pipe(tmp, tap_config(sb, tables=[TABLE]), {"connection_string": ref},
                         ref_state)
            assert r.ok, r.describe()
            ref_state = r.last_state
            crash_state = crash_group(tmp, sb, crash, crash_state, rng, r.seconds, log)
            assert bookmark(crash_state) == bookmark(ref_state), "\n".join(log)
            expected = digest(ref)
            assert expected[0] == sb.service.state()[f"{NS}.{TABLE}"]["live_rows"]
            assert digest(crash) == expected, "\n".join(log)
            _check_meta(crash, crash_state)
            print("\n".join(log[-3:]))
        # the reference (and so every crash database) equals the sandbox row by row
        assert_table_equals_sandbox(crash, sb, NS, TABLE, label="after the incremental kills")
    print("\n".join(log))
