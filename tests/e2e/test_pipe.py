"""The README's shell pipe, for real, into PostgreSQL, MariaDB and SQLite:

    tap-canvas-data2 --config c.json [--state s.json] | target-dap-sql --config t.json > st.jsonl

Three runs against one sandbox, each resuming from the last STATE line the target printed:

1. no state: every canvas table is snapshotted; every table equals `expected_rows`;
   `instructure_dap.table_sync` holds each job's `at`, schema version and schema.
2. inserts/updates/deletes upstream on several tables and a schema bump (a new column) on
   one: incremental jobs only (sandbox job counts), the new column appears, every table
   equals again, table_sync timestamps moved to the jobs' `until`.
3. a DAP table reload (SnapshotRequired for the stored bookmark), with `format: jsonl`: the
   tap takes a new snapshot of that table alone and the target replaces the table (a stray
   local row disappears), the others continue incrementally; equal again.
"""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.util import (
    NS,
    assert_nothing_later,
    canvas_tables,
    check_bookmarks,
    check_meta,
    check_tables,
    clean_env,
    duplicate_row,
    jobs_by_kind,
    run_pipe,
    same_instant,
    small_sandbox,
    tap_config,
)
from tests.helpers import db_compare as dbc

# table: (inserts, updates, deletes) committed between run 1 and run 2
CHANGES = {
    "accounts": (3, 4, 2),
    "users": (4, 5, 3),
    "submissions": (5, 6, 4),
    "enrollments": (2, 3, 2),
    "courses": (0, 2, 1),
}
BUMPED = "users"
RELOADED = "courses"


def assert_meta_matches_state(url: str, state: dict, stage: str) -> None:
    """table_sync.timestamp of every table = the bookmark (the job's at/until) of the STATE
    the target printed after committing it (MySQL `datetime`: to the second, as dap)."""
    seconds = dbc.dialect_of(url) == "mysql"
    for r in dbc.meta_rows(url):
        bookmark = state["bookmarks"][f"{r['source_namespace']}-{r['source_table']}"]
        assert same_instant(r["timestamp"], bookmark["timestamp"], seconds_only=seconds), (
            f"{stage}: table_sync.timestamp of {r['source_table']} is {r['timestamp']}, "
            f"the STATE says {bookmark['timestamp']}")
        assert r["schema_version"] == bookmark["schema_version"], (stage, r, bookmark)


def test_snapshot_incremental_schema_bump_and_reload(db_url, tmp_path):
    tables = canvas_tables()
    dialect = dbc.dialect_of(db_url)
    target_cfg = {"connection_string": db_url}
    later: list[str] = []
    with small_sandbox(seed=11) as sb:
        # ---- 1. first run: snapshots
        run1 = run_pipe(tmp_path / "run1", tap_config(sb), target_cfg)
        check_bookmarks(sb, run1.last_state, tables, "after the snapshot run")
        check_tables(sb, db_url, tables, "after the snapshot run")
        check_meta(sb, db_url, tables, "after the snapshot run", later)
        assert_meta_matches_state(db_url, run1.last_state, "after the snapshot run")
        assert jobs_by_kind(sb) == {t: {"snapshot": 1, "incremental": 0} for t in tables}, (
            sb.stats()["jobs"])

        # ---- 2. changes + a schema bump, then the pipe again from the last STATE line
        for t, (i, u, d) in CHANGES.items():
            sb.advance(NS, t, inserts=i, updates=u, deletes=d)
        old_version = sb.schema(NS, BUMPED)["version"]
        columns_before = set(dbc.column_schemas(sb.schema(NS, BUMPED)["schema"])[0])
        sb.bump_schema(NS, BUMPED)
        sb.advance(NS, BUMPED, inserts=2, updates=3, deletes=1)  # rows with the new column
        new_schema = sb.schema(NS, BUMPED)
        assert new_schema["version"] > old_version
        added = set(dbc.column_schemas(new_schema["schema"])[0]) - columns_before
        assert len(added) == 1, added

        run2 = run_pipe(tmp_path / "run2", tap_config(sb), target_cfg, state=run1.last_state)
        assert jobs_by_kind(sb) == {t: {"snapshot": 1, "incremental": 1} for t in tables}, (
            "the second run must be incremental for every table: " + str(sb.stats()["jobs"]))
        check_bookmarks(sb, run2.last_state, tables, "after the incremental run")
        for t in CHANGES:
            assert (run2.last_state["bookmarks"][f"{NS}-{t}"]["timestamp"]
                    != run1.last_state["bookmarks"][f"{NS}-{t}"]["timestamp"]), t
        check_tables(sb, db_url, tables, "after the incremental run")  # the new column too
        check_meta(sb, db_url, tables, "after the incremental run", later)
        assert_meta_matches_state(db_url, run2.last_state, "after the incremental run")
        [users_meta] = [r for r in dbc.meta_rows(db_url) if r["source_table"] == BUMPED]
        assert users_meta["schema_version"] == new_schema["version"]
        if dialect != "sqlite":
            [col] = added
            assert col in [c["name"] for c in dbc.ddl_facts(db_url, NS, BUMPED)["columns"]]

        # ---- 3. SnapshotRequired on one table; the tap re-snapshots, the target replaces
        stray_id = 900_000_001
        duplicate_row(db_url, RELOADED, stray_id)
        assert stray_id in dbc.fetch_rows(db_url, NS, RELOADED, sb.schema(NS, RELOADED))
        sb.reload(NS, RELOADED)
        sb.advance(NS, RELOADED, inserts=2, updates=2, deletes=1)
        sb.advance(NS, "accounts", inserts=1, updates=1, deletes=1)
        run3 = run_pipe(tmp_path / "run3", tap_config(sb, format="jsonl"), target_cfg,
                        state=run2.last_state)
        warned = [line for line in run3.tap_stderr.splitlines()
                  if "WARNING" in line and f"{NS}.{RELOADED}" in line]
        assert warned and "taking a new snapshot" in warned[0], (
            "the tap did not warn that it re-snapshots the reloaded table\n" + run3.describe())
        jobs = jobs_by_kind(sb)
        assert jobs[RELOADED]["snapshot"] == 2, jobs[RELOADED]
        for t in tables:
            if t != RELOADED:
                assert jobs[t] == {"snapshot": 1, "incremental": 2}, (t, jobs[t])
        check_bookmarks(sb, run3.last_state, tables, "after the reload run")
        check_tables(sb, db_url, tables, "after the reload run (jsonl)")  # stray row gone
        check_meta(sb, db_url, tables, "after the reload run", later)
        assert_meta_matches_state(db_url, run3.last_state, "after the reload run")
    assert_nothing_later(later)


def test_pure_python_paths(db_url, tmp_path):
    """With CANVAS_DATA2_PURE_PYTHON=1 (or no C compiler at install) the tap and the target run
    their Python paths only: the same tables, after a snapshot and after an incremental."""
    pure = {"CANVAS_DATA2_PURE_PYTHON": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "from tap_canvas_data2 import _tsvjson; "
         "from target_dap_sql import loading; print(_tsvjson._transcode, loading._rows)"],
        env=clean_env(**pure), capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["None", "None"]
    tables = ["submissions", "users", "assignments"]
    target_cfg = {"connection_string": db_url}
    with small_sandbox(seed=5) as sb:
        run1 = run_pipe(tmp_path / "run1", tap_config(sb, tables=tables), target_cfg, env=pure)
        check_tables(sb, db_url, tables, "pure Python, after the snapshot")
        for t in tables:
            sb.advance(NS, t, inserts=3, updates=4, deletes=2)
        run_pipe(tmp_path / "run2", tap_config(sb, tables=tables), target_cfg,
                 state=run1.last_state, env=pure)
        check_tables(sb, db_url, tables, "pure Python, after the incremental")
