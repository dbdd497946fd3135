"""A database moves between Instructure's `dap` CLI (instructure-dap-client 2.3.1, its own
venv: tests/helpers/dap_cli.py) and this project, either way, on PostgreSQL and MariaDB.

test_database_moves_between_dap_and_us, per dialect: one sandbox, two fresh databases.
- `dap initdb --table all` makes database D; `canvas-data2 initdb --table all` makes O
  (same sandbox state). O's table_sync rows must equal D's (the auto-increment id aside;
  checked last, so that the data checks below run even when they differ).
- round A: inserts/updates/deletes on several tables + a schema bump (new column) on one;
  (a) `canvas-data2 syncdb` continues D (dap's database, incremental jobs only) -> equal;
  (b) `dap syncdb` continues O (our database) -> equal.
- round B: more changes;
  (a) `canvas-data2 state` | tap --state | target-dap-sql continues D (the README's Meltano
      migration path; no snapshot) -> equal;
  (b) `dap syncdb` continues O again -> equal. table_sync checked after every step.

test_our_initdb_ddl_equals_dap_reference, per dialect (c): after `canvas-data2 initdb
--table all`, the DDL facts of every table and of both meta tables equal the reference DDL
that dap made (tests/golden/dap_ddl/<dialect>/), with one narrow, explicit allowance: MySQL
date-time columns are `datetime(6)` where dap has `datetime` (README, "Deliberate
differences").

MySQL columns that dap created (`datetime`, no fraction), or that dap wrote into, are
compared to the second, as dap itself stores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.util import (
    NS,
    assert_nothing_later,
    canvas_tables,
    check_meta,
    check_tables,
    clean_env,
    describe,
    exe,
    jobs_by_kind,
    run_pipe,
    small_sandbox,
    tap_config,
)
from tests.helpers import db_compare as dbc
from tests.helpers.dap_cli import DapClientUnavailable, ensure_dap, run_dap
from tests.helpers.databases import database

GOLDEN_DDL = Path(__file__).resolve().parents[1] / "golden" / "dap_ddl"
META_TABLES = ("table_sync", "database_version")
ROUND_A = {"accounts": (2, 3, 1), "users": (3, 4, 2), "submissions": (4, 4, 3),
           "enrollments": (2, 2, 2)}
ROUND_B = {"users": (2, 2, 1), "courses": (1, 3, 1), "assignments": (2, 1, 1)}
BUMPED = "accounts"


@pytest.fixture(scope="module")
def dap_exe():
    try:
        return ensure_dap()
    except DapClientUnavailable as exc:  # never skip: CI installs it
        pytest.fail(f"the official DAP client is unavailable:\n{exc}", pytrace=False)


def dap(sb, url: str, *args: str):
    proc = run_dap(list(args), url=sb.url, client_id=sb.client_id,
                   client_secret=sb.client_secret, connection_string=url)
    assert proc.returncode == 0, "dap failed\n" + describe(proc)
    return proc


def ours(sb, url: str, *args: str, cwd: Path):
    import subprocess

    env = clean_env(DAP_API_URL=sb.url, DAP_CLIENT_ID=sb.client_id,
                    DAP_CLIENT_SECRET=sb.client_secret, DAP_CONNECTION_STRING=url)
    proc = subprocess.run([exe("canvas-data2"), "--jobs-per-minute", "0", *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, describe(proc)
    return proc


# --------------------------------------------------------------------------- DDL


def allow_fractional_datetimes(ours_facts: dict, dap_facts: dict) -> dict:
    """The one deliberate DDL difference: on MySQL/MariaDB our date-time columns are
    `datetime(6)` (microseconds kept) where dap's are `datetime`. Returns a copy of our facts
    with exactly those two attributes (type, datetime_precision) of exactly those columns
    set to dap's values; everything else must match as it is."""
    if ours_facts.get("dialect") != "mysql":
        return ours_facts
    theirs = {c["name"]: c for c in dap_facts.get("columns", [])}
    out = json.loads(json.dumps(ours_facts))
    for col in out["columns"]:
        ref = theirs.get(col["name"])
        if (ref is not None and ref["data_type"] == "datetime" and ref["type"] == "datetime"
                and col["data_type"] == "datetime" and col["type"] == "datetime(6)"
                and col["datetime_precision"] == 6):
            col["type"], col["datetime_precision"] = ref["type"], ref["datetime_precision"]
    return out


def ddl_problems(url: str, dialect: str, tables: list[str]) -> list[str]:
    problems = []
    names = [(NS, t) for t in tables] + [("instructure_dap", m) for m in META_TABLES]
    for ns, t in names:
        ref_name = t if ns == NS else f"{ns}.{t}"
        reference = json.loads((GOLDEN_DDL / dialect / f"{ref_name}.json").read_text("utf-8"))
        facts = allow_fractional_datetimes(dbc.ddl_facts(url, ns, t), reference)
        diff = dbc.diff_ddl(facts, reference)
        if diff:
            problems.append(f"{dialect} {ref_name}:\n    " + "\n    ".join(d[:600] for d in diff))
    return problems


def json_differences(a, b, path: str = "$", limit: int = 5) -> list[str]:
    """Paths where two JSON values differ (at most `limit`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: ours={a.get(k, '<absent>')!r} "
                           f"dap={b.get(k, '<absent>')!r}")
            else:
                out += json_differences(a[k], b[k], f"{path}.{k}", limit)
            if len(out) >= limit:
                break
        return out[:limit]
    if a != b:
        return [f"{path}: ours={str(a)[:200]!r} dap={str(b)[:200]!r}"]
    return []


def meta_differences(our_url: str, dap_url: str) -> list[str]:
    """table_sync rows of our database vs dap's (the auto-increment id aside)."""
    mine = {r["source_table"]: r for r in dbc.meta_rows(our_url)}
    theirs = {r["source_table"]: r for r in dbc.meta_rows(dap_url)}
    problems = []
    for t in sorted(set(mine) | set(theirs)):
        a, b = mine.get(t, {}), theirs.get(t, {})
        diffs = []
        for k in sorted((set(a) | set(b)) - {"id"}):
            diffs += [f"{k}{d[1:]}" for d in json_differences(a.get(k), b.get(k))]
        if diffs:
            problems.append(f"{t}: " + "; ".join(diffs))
    return problems


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_database_moves_between_dap_and_us(dialect, dap_exe, tmp_path):
    tables = canvas_tables()
    mysql = dialect == "mysql"
    precision = "second" if mysql else "microsecond"
    later: list[str] = []
    with small_sandbox(seed=31) as sb, database(dialect, str(tmp_path)) as dap_db, \
            database(dialect, str(tmp_path)) as our_db:
        # ---- both initdb, from the same sandbox state
        dap(sb, dap_db, "initdb", "--namespace", NS, "--table", "all")
        ours(sb, our_db, "initdb", "--table", "all", cwd=tmp_path)
        check_tables(sb, dap_db, tables, "dap initdb", datetime_precision=precision)
        check_tables(sb, our_db, tables, "our initdb")
        check_meta(sb, our_db, tables, "our initdb", later)

        # our table_sync rows are the ones dap writes (checked at the end, after the data)
        meta_problems = meta_differences(our_db, dap_db)

        # ---- round A: changes + a schema bump
        for t, (i, u, d) in ROUND_A.items():
            sb.advance(NS, t, inserts=i, updates=u, deletes=d)
        sb.bump_schema(NS, BUMPED)
        sb.advance(NS, BUMPED, inserts=2, updates=2)
        before = jobs_by_kind(sb)
        ours(sb, dap_db, "syncdb", "--table", "all", cwd=tmp_path)  # (a)
        after = jobs_by_kind(sb)
        assert all(after[t]["incremental"] == before[t]["incremental"] + 1
                   and after[t]["snapshot"] == before[t]["snapshot"] for t in tables), (
            f"canvas-data2 syncdb on dap's database did not continue incrementally: {after}")
        check_tables(sb, dap_db, tables, "dap initdb + our syncdb", datetime_precision=precision)
        check_meta(sb, dap_db, tables, "dap initdb + our syncdb", later)
        dap(sb, our_db, "syncdb", "--namespace", NS, "--table", "all")  # (b)
        check_tables(sb, our_db, tables, "our initdb + dap syncdb", datetime_precision=precision)
        check_meta(sb, our_db, tables, "our initdb + dap syncdb", later)

        # ---- round B: the Meltano path on dap's database, dap again on ours
        for t, (i, u, d) in ROUND_B.items():
            sb.advance(NS, t, inserts=i, updates=u, deletes=d)
        state = json.loads(ours(sb, dap_db, "state", cwd=tmp_path).stdout)
        assert sorted(state["bookmarks"]) == [f"{NS}-{t}" for t in tables], state
        before = jobs_by_kind(sb)
        run = run_pipe(tmp_path / "state_pipe", tap_config(sb), {"connection_string": dap_db},
                       state=state)
        after = jobs_by_kind(sb)
        assert all(after[t]["snapshot"] == before[t]["snapshot"] for t in tables), (
            "the tap took a snapshot although the state came from dap's table_sync\n"
            + run.describe())
        check_tables(sb, dap_db, tables, "dap database + state | tap | target",
                     datetime_precision=precision)
        check_meta(sb, dap_db, tables, "dap database + state | tap | target", later)
        dap(sb, our_db, "syncdb", "--namespace", NS, "--table", "all")
        check_tables(sb, our_db, tables, "our database + dap syncdb twice",
                     datetime_precision=precision)
        check_meta(sb, our_db, tables, "our database + dap syncdb twice", later)

        later += [f"after initdb, our table_sync row differs from dap's: {p}"
                  for p in meta_problems]
    assert_nothing_later(later)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_our_initdb_ddl_equals_dap_reference(dialect, tmp_path):
    """(c) after `canvas-data2 initdb --table all`, every table's DDL and both meta tables'
    equal the reference DDL dap made, but for the one documented allowance."""
    tables = canvas_tables()
    with small_sandbox(seed=32) as sb, database(dialect, str(tmp_path)) as url:
        ours(sb, url, "initdb", "--table", "all", cwd=tmp_path)
        problems = ddl_problems(url, dialect, tables)
        assert not problems, "our DDL differs from dap's\n" + "\n".join(problems)
