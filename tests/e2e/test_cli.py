"""`canvas-data2`, the dap-like CLI, as a user runs it: a real process per command, the
dap environment variables (DAP_API_URL, DAP_CLIENT_ID, DAP_CLIENT_SECRET,
DAP_CONNECTION_STRING), a sandbox DAP API, a SQLite file.

- initdb --table all / syncdb / listdb / state / dropdb / initdb again: the database equals
  the sandbox after each step, table_sync as dap keeps it, state = table_sync;
- refusals: initdb of an initialized table ("already initialized", non-zero), syncdb of a
  fresh database or of a dropped table ("not initialized", non-zero);
- files: snapshot / incremental --since (one directory per table) decode to exactly the
  sandbox's rows and changes; list; schema (dap's file names and contents);
- demo (its own in-process sandbox) into SQLite: prints what it loaded, and the database
  holds exactly the rows of that sandbox after its round of changes;
- missing credentials: one line on stderr, exit 2, for every command that talks to DAP.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

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
    same_instant,
    small_sandbox,
)
from tests.helpers import db_compare as dbc


def cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300,
        ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([exe("canvas-data2"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if ok:
        assert proc.returncode == 0, describe(proc)
    return proc


def sandbox_env(sb, url: str) -> dict[str, str]:
    return clean_env(DAP_API_URL=sb.url, DAP_CLIENT_ID=sb.client_id,
                     DAP_CLIENT_SECRET=sb.client_secret, DAP_CONNECTION_STRING=url)


def read_jsonl_files(files: list[Path]) -> list[dict]:
    records = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def table_exists(url: str, table: str) -> bool:
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (f"{NS}__{table}",))
        return bool(cur.fetchall())


def test_database_commands(sqlite_url, tmp_path):
    tables = canvas_tables()
    later: list[str] = []
    with small_sandbox(seed=21) as sb:
        env = sandbox_env(sb, sqlite_url)
        fast = ["--jobs-per-minute", "0"]  # the sandbox has no job rate limit

        # syncdb before any initdb refuses
        proc = cli(*fast, "syncdb", env=env, cwd=tmp_path, ok=False)
        assert proc.returncode != 0 and "not initialized" in proc.stderr, describe(proc)
        proc = cli(*fast, "syncdb", "--table", "users", env=env, cwd=tmp_path, ok=False)
        assert proc.returncode != 0 and "not initialized" in proc.stderr, describe(proc)
        assert sb.stats()["jobs_created"] == 0

        # initdb --table all (spooling downloads through --temp-dir)
        spool = tmp_path / "spool"
        spool.mkdir()
        cli(*fast, "--temp-dir", str(spool), "initdb", "--table", "all", env=env, cwd=tmp_path)
        check_tables(sb, sqlite_url, tables, "after initdb")
        check_meta(sb, sqlite_url, tables, "after initdb", later)

        # initdb again refuses, for all tables and for one
        for which in ("all", "users"):
            proc = cli(*fast, "initdb", "--table", which, env=env, cwd=tmp_path, ok=False)
            assert proc.returncode != 0, describe(proc)
            assert "already initialized" in proc.stderr, describe(proc)
        assert all(v["snapshot"] == 1 for v in jobs_by_kind(sb).values())

        # listdb: every table, its row count, its last sync time and schema version
        listed = {e["table"]: e for e in json.loads(cli("listdb", env=env, cwd=tmp_path).stdout)}
        assert sorted(listed) == tables
        for t in tables:
            assert listed[t]["rows"] == len(list(sb.expected_rows(NS, t))), listed[t]
            assert same_instant(listed[t]["timestamp"], sb.latest(NS, t)), listed[t]
            assert listed[t]["schema_version"] == sb.schema(NS, t)["version"]

        # state: the Singer state the meta table stands for
        state = json.loads(cli("state", env=env, cwd=tmp_path).stdout)
        assert sorted(state["bookmarks"]) == [f"{NS}-{t}" for t in tables]
        for t in tables:
            b = state["bookmarks"][f"{NS}-{t}"]
            assert same_instant(b["timestamp"], sb.latest(NS, t))
            assert b["schema_version"] == sb.schema(NS, t)["version"]
        wrapped = json.loads(cli("state", "--meltano", env=env, cwd=tmp_path).stdout)
        assert wrapped == {"singer_state": state}  # what `meltano state set` accepts

        # changes upstream, then syncdb (all initialized tables)
        for t, (i, u, d) in {"users": (3, 4, 2), "accounts": (1, 2, 1),
                             "submissions": (4, 3, 3)}.items():
            sb.advance(NS, t, inserts=i, updates=u, deletes=d)
        cli(*fast, "syncdb", env=env, cwd=tmp_path)
        assert jobs_by_kind(sb) == {t: {"snapshot": 1, "incremental": 1} for t in tables}
        check_tables(sb, sqlite_url, tables, "after syncdb")
        check_meta(sb, sqlite_url, tables, "after syncdb", later)

        # dropdb one table: gone with its meta row; syncdb of it refuses; initdb restores it
        proc = cli("dropdb", "--table", "users", env=env, cwd=tmp_path)
        assert not table_exists(sqlite_url, "users")
        listed = [e["table"] for e in json.loads(cli("listdb", env=env, cwd=tmp_path).stdout)]
        assert "users" not in listed and len(listed) == len(tables) - 1
        proc = cli(*fast, "syncdb", "--table", "users", env=env, cwd=tmp_path, ok=False)
        assert proc.returncode != 0 and "not initialized" in proc.stderr, describe(proc)
        sb.advance(NS, "users", inserts=2, updates=2, deletes=1)
        cli(*fast, "initdb", "--table", "users", env=env, cwd=tmp_path)
        assert jobs_by_kind(sb)["users"] == {"snapshot": 2, "incremental": 1}
        check_tables(sb, sqlite_url, tables, "after dropdb + initdb")
        check_meta(sb, sqlite_url, tables, "after dropdb + initdb", later)
    assert_nothing_later(later)


def test_file_commands(tmp_path):
    with small_sandbox(seed=22) as sb:
        env = sandbox_env(sb, "sqlite:///" + str(tmp_path / "unused.db"))

        # list
        listed = cli("list", env=env, cwd=tmp_path).stdout.split()
        assert listed == sb.tables(NS)

        # schema: dap's file name, the schema as the API serves it
        cli("schema", "--table", "users,accounts", "--output-directory", "schemas",
            env=env, cwd=tmp_path)
        for t in ("users", "accounts"):
            served = sb.schema(NS, t)
            path = tmp_path / "schemas" / f"{t}_schema_version_{served['version']}.json"
            assert path.exists(), sorted(p.name for p in (tmp_path / "schemas").iterdir())
            assert json.loads(path.read_text()) == served

        # snapshot of two tables as JSONL files: exactly the current rows
        proc = cli("--jobs-per-minute", "0", "snapshot", "--table", "users,accounts",
                   "--format", "jsonl", "--output-directory", "snap", env=env, cwd=tmp_path)
        printed = [Path(p) for p in proc.stdout.split()]
        at = {}
        for t in ("users", "accounts"):
            files = sorted(f if f.is_absolute() else tmp_path / f for f in printed
                           if (f if f.is_absolute() else tmp_path / f).parent.name == t)
            assert len(files) >= 2, f"{t}: expected a multi-object snapshot, got {printed}"
            records = read_jsonl_files(files)
            assert all("action" not in r.get("meta", {}) for r in records)
            schema = sb.schema(NS, t)["schema"]
            columns = dbc.column_schemas(schema)[0]
            # DAP's JSONL leaves NULL members out
            rows = dbc.normalize_rows(
                [{**dict.fromkeys(columns), **r["key"], **r["value"]} for r in records], schema)
            dbc.assert_rows_equal(rows, sb.expected_rows(NS, t), schema_json=schema,
                                  label=f"canvas-data2 snapshot {t}")
            m = re.search(rf"{NS}\.{t}: snapshot job \S+ at (\S+),", proc.stderr)
            assert m, describe(proc)
            at[t] = m.group(1)
            assert same_instant(at[t], sb.latest(NS, t))

        # changes, then incremental --since the snapshot's `at`: exactly those changes
        sb.advance(NS, "users", inserts=2, updates=3, deletes=2)
        proc = cli("incremental", "--table", "users", "--since", at["users"], "--format",
                   "jsonl", "--output-directory", "inc", env=env, cwd=tmp_path)
        files = [Path(p) if Path(p).is_absolute() else tmp_path / p for p in proc.stdout.split()]
        records = read_jsonl_files(files)
        actions = [r["meta"].get("action") for r in records]
        assert actions.count("U") == 5 and actions.count("D") == 2, actions
        m = re.search(rf"{NS}\.users: incremental job \S+ since (\S+) until (\S+),", proc.stderr)
        assert m and same_instant(m.group(2), sb.latest(NS, "users")), describe(proc)

        # incremental as TSV too (the header names key/value/meta columns)
        proc = cli("incremental", "--table", "users", "--since", at["users"], "--format", "tsv",
                   "--output-directory", "inc_tsv", env=env, cwd=tmp_path)
        text = "".join((Path(p) if Path(p).is_absolute() else tmp_path / p).read_text()
                       for p in proc.stdout.split())
        lines = [x for x in text.splitlines() if x]
        header = lines[0].split("\t")
        assert {"key.id", "meta.action"} <= set(header) and len(lines) == 1 + 7, lines[:2]
        actions = [x.split("\t")[header.index("meta.action")] for x in lines[1:]]
        assert sorted(actions) == ["D"] * 2 + ["U"] * 5, actions


def test_missing_credentials_one_line_exit_2(tmp_path):
    env = clean_env(DAP_API_URL="http://127.0.0.1:9",  # never reached
                    DAP_CONNECTION_STRING="sqlite:///" + str(tmp_path / "x.db"))
    for args in (["list"], ["schema", "--table", "users"], ["initdb", "--table", "users"],
                 ["initdb"], ["syncdb", "--table", "users"],
                 ["snapshot", "--table", "users", "--output-directory", "out"],
                 ["incremental", "--table", "users", "--since", "2025-01-01T00:00:00Z"]):
        proc = cli(*args, env=env, cwd=tmp_path, ok=False)
        assert proc.returncode == 2, describe(proc)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), describe(proc)
        assert "DAP_CLIENT_ID" in lines[0] and "DAP_CLIENT_SECRET" in lines[0], lines[0]
        assert proc.stdout == "", describe(proc)


def test_demo_into_sqlite(tmp_path):
    """`canvas-data2 demo` (the README's first command) into a SQLite file named by
    DAP_CONNECTION_STRING: it says what it loaded, and the file holds exactly what its
    sandbox (seed 1, default sizes, one round of 3 inserts / 5 updates / 2 deletes per table)
    holds — rebuilt here with the same seed and the same operations."""
    from tap_canvas_data2.sandbox import Sandbox

    url = "sqlite:///" + str(tmp_path / "demo.db")
    later: list[str] = []
    proc = cli("demo", env=clean_env(DAP_CONNECTION_STRING=url), cwd=tmp_path, timeout=240)
    out = proc.stdout + proc.stderr
    assert "sandbox DAP API at http://127.0.0.1:" in proc.stderr, describe(proc)
    assert "demo finished" in proc.stderr, describe(proc)
    with Sandbox(seed=1) as sb:
        tables = sb.tables(NS)
        for t in tables:
            sb.advance(NS, t, inserts=3, updates=5, deletes=2)
        for t in tables:
            count = len(list(sb.expected_rows(NS, t)))
            assert re.search(rf"^{NS}\.{t}\s+{count}\s", proc.stdout, re.MULTILINE), (
                f"demo did not report {NS}.{t} with {count} rows\n{out[-4000:]}")
        check_tables(sb, url, tables, "after demo")
        check_meta(sb, url, tables, "after demo", later)
    assert_nothing_later(later)
