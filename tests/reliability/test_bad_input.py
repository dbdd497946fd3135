"""Bad input: one-line error (last stderr line, no traceback) naming the problem and what to
do, non-zero exit, nothing half-applied. Tap side and pipeline level (the target alone on
golden files is covered in tests/target/test_golden.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tap_canvas_data2.sandbox import Sandbox
from tests.helpers import db_compare as dbc
from tests.reliability.util import (
    TAP,
    TARGET,
    assert_one_line_error,
    assert_table_equals_sandbox,
    clean_env,
    last_line,
    run_pipe,
    tap_config,
)

NS = "canvas"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(seed=41, rows={"users": 300, "accounts": 20}, rows_per_object=100) as s:
        yield s


def tables_in(url: str) -> list[str]:
    """User tables of the test database (meta tables excluded)."""
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        d = dbc.dialect_of(url)
        if d == "postgresql":
            cur.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema', "
                        "'instructure_dap')")
        elif d == "mysql":
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME NOT LIKE 'instructure_dap%'")
        else:
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                        "'instructure_dap%'")
        out = sorted(r[0] if isinstance(r[0], str) else r[0].decode() for r in cur.fetchall())
        cur.close()
    return out


def sync_rows(url: str) -> list:
    try:
        return dbc.meta_rows(url)
    except Exception:  # noqa: BLE001 - no meta table: nothing synced
        return []


def assert_nothing_applied(url: str, r) -> None:
    assert r.states == [], f"a STATE was printed\n{r.describe()}"
    assert tables_in(url) == [], r.describe()
    assert sync_rows(url) == []


# --------------------------------------------------------------------------- tap side


@pytest.mark.parametrize("case,words", [
    ("wrong_secret", ["credentials", "client_secret"]),
    ("wrong_client_id", ["credentials", "client_id"]),
    ("unknown_namespace", ["namespace", "nope_ns"]),
    ("unknown_table", ["unknown table", "nope_table", "tables"]),
    ("unknown_qualified_table", ["unknown table", "canvas.nope_table", "tables"]),
])
def test_tap_bad_dap_settings_through_the_pipe(sb, db_url, tmp_path, case, words):
    extra = {
        "wrong_secret": {"client_secret": "not-the-secret"},
        "wrong_client_id": {"client_id": "us-east-1#nobody"},
        "unknown_namespace": {"namespaces": ["nope_ns"]},
        "unknown_table": {"tables": ["users", "nope_table"]},
        "unknown_qualified_table": {"tables": ["canvas.nope_table", "accounts"]},
    }[case]
    r = run_pipe(tmp_path, tap_config(sb, **{"tables": ["users"], **extra}),
                 {"connection_string": db_url})
    assert r.tap_rc != 0, r.describe()
    line = assert_one_line_error(r, *words, "tap-canvas-data2: error:")
    assert sb.client_secret not in r.output and "not-the-secret" not in r.output, line
    assert "Traceback" not in r.target_stderr
    assert_nothing_applied(db_url, r)
    assert sb.stats()["faults_armed"] == []


BASE = {"base_url": "http://127.0.0.1:1", "client_id": "x", "client_secret": "secret-y"}


@pytest.mark.parametrize("config,words", [
    ({"base_url": "http://127.0.0.1:1", "client_id": "x"},
     ["client_secret", "DAP_CLIENT_SECRET"]),
    ({**BASE, "format": "xml"}, ["format", "xml"]),
    ({**BASE, "download_concurrency": "many"},
     ["download_concurrency", "many"]),
    ({**BASE, "since": "yesterday"}, ["since"]),
    ("{not json", ["not valid json", "--config"]),
    ([1, 2], ["json object"]),
    (None, ["does not exist", "--config"]),
], ids=["missing_secret", "bad_enum", "bad_type", "bad_datetime", "invalid_json",
        "not_an_object", "missing_file"])
def test_tap_malformed_settings(tmp_path, config, words):
    path = tmp_path / "c.json"
    if config is not None:
        path.write_text(config if isinstance(config, str) else json.dumps(config))
    proc = subprocess.run([TAP, "--config", str(path)], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("tap-canvas-data2: error:"), proc.stderr
    for w in words:
        assert w.lower() in line.lower(), line
    assert proc.stdout == ""


def test_tap_malformed_state_file(sb, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tap_config(sb, tables=["accounts"])))
    state = tmp_path / "s.json"
    state.write_text('{"bookmarks": {"canvas-accounts": ')
    proc = subprocess.run([TAP, "--config", str(cfg), "--state", str(state)],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("tap-canvas-data2: error:") and "--state" in line, line
    assert sb.stats()["jobs_created"] == 0 or '"RECORD"' not in proc.stdout


# --------------------------------------------------------------------------- target side


@pytest.mark.parametrize("config,words", [
    ("{not json", ["not valid json", "--config"]),
    (None, ["does not exist", "--config"]),
    ({"connection_string": "oracle://u@h/db"}, ["oracle", "postgresql://"]),
    ({"connection_string": "postgresql://u@127.0.0.1:5432"}, ["no database"]),
    ({"connection_string": "sqlite:///x.db", "batch_size_rows": "many"},
     ["batch_size_rows", "many"]),
], ids=["invalid_json", "missing_file", "bad_scheme", "no_database", "bad_type"])
def test_target_malformed_settings(sb, tmp_path, config, words):
    """The whole pipe: the target refuses its settings, the tap stops on the closed pipe."""
    tgt = tmp_path / "t.json"
    if config is not None:
        tgt.write_text(config if isinstance(config, str) else json.dumps(config))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tap_config(sb, tables=["users"])))
    proc = subprocess.run(
        f"set -o pipefail; {TAP} --config {cfg} 2>{tmp_path}/tap.err | "
        f"{TARGET} --config {tgt}", shell=True, executable="/bin/bash", capture_output=True,
        text=True, env=clean_env(), timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    line = last_line(proc.stderr)
    assert line.startswith("target-dap-sql: error:"), proc.stderr
    for w in words:
        assert w.lower() in line.lower(), line
    assert proc.stdout == ""
    tap_err = (tmp_path / "tap.err").read_text()
    assert "Traceback" not in tap_err, tap_err
    assert not (tmp_path / "x.db").exists()


def test_unreachable_database_through_the_pipe(sb, tmp_path):
    r = run_pipe(tmp_path, tap_config(sb, tables=["users"]),
                 {"connection_string": "postgresql://postgres@127.0.0.1:1/nodb"})
    assert r.target_rc != 0, r.describe()
    assert_one_line_error(r, "cannot connect", "127.0.0.1:1", who="target")
    assert "Traceback" not in r.tap_stderr, r.describe()
    if r.tap_rc:
        assert last_line(r.tap_stderr).startswith("tap-canvas-data2: error:"), r.describe()


# --------------------------------------------------------------------------- pipeline level


@pytest.fixture
def tap_output(sb, tmp_path) -> list[bytes]:
    """The tap's real output for accounts then users (STATE after each table)."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tap_config(sb, tables=["accounts", "users"])))
    proc = subprocess.run([TAP, "--config", str(cfg)], capture_output=True, env=clean_env(),
                          timeout=120, check=True)
    return proc.stdout.splitlines(keepends=True)


def _index(lines: list[bytes], mtype: str, stream: str | None = None, nth: int = 0) -> int:
    hits = [i for i, ln in enumerate(lines) if json.loads(ln)["type"] == mtype
            and (stream is None or json.loads(ln).get("stream") == stream)]
    return hits[nth]


def _corrupt(lines: list[bytes], how: str) -> tuple[list[bytes], str]:
    first_state = _index(lines, "STATE")
    users_schema = _index(lines, "SCHEMA", "canvas-users")
    assert first_state < users_schema
    out = list(lines)
    rec = _index(out, "RECORD", "canvas-users", 50)
    if how == "invalid_json":
        out[rec] = out[rec][: len(out[rec]) // 2] + b"\n"
        words = [f"input line {rec + 1}", "json"]
    elif how == "record_before_schema":
        del out[users_schema]
        words = ["canvas-users", "schema"]
    elif how == "schema_without_key_properties":
        msg = json.loads(out[users_schema])
        msg["key_properties"] = []
        out[users_schema] = json.dumps(msg).encode() + b"\n"
        words = [f"input line {users_schema + 1}", "key"]
    elif how == "record_violates_schema":
        msg = json.loads(out[rec])
        msg["record"]["workflow_state"] = "no_such_state"
        out[rec] = json.dumps(msg).encode() + b"\n"
        words = ["canvas-users", "workflow_state", "key id="]
    else:
        raise ValueError(how)
    return out, " ".join(words)


@pytest.mark.parametrize("how", ["invalid_json", "record_before_schema",
                                 "schema_without_key_properties", "record_violates_schema"])
def test_malformed_singer_input_keeps_last_state(sb, server_url, tmp_path, tap_output, how):
    """A malformed stream after a first committed STATE: one-line error naming the problem,
    non-zero exit, the first table and its STATE kept, nothing of the second applied."""
    lines, words = _corrupt(tap_output, how)
    tgt = tmp_path / "t.json"
    tgt.write_text(json.dumps({"connection_string": server_url}))
    proc = subprocess.run([TARGET, "--config", str(tgt)], input=b"".join(lines),
                          capture_output=True, env=clean_env(), timeout=120, cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode != 0, err
    assert "Traceback" not in err, err
    line = last_line(err)
    assert line.startswith("target-dap-sql: error:"), err
    for w in words.split():
        assert w.lower() in line.lower(), line
    states = [json.loads(s) for s in proc.stdout.decode().splitlines() if s.strip()]
    assert len(states) == 1 and list(states[0]["bookmarks"]) == ["canvas-accounts"], states
    assert_table_equals_sandbox(server_url, sb, NS, "accounts")
    users = [t for t in tables_in(server_url) if "users" in t]
    if users:  # the table may have been created, but holds none of the bad stream's rows
        assert dbc.fetch_rows(server_url, NS, "users") == {}
    assert [m["source_table"] for m in dbc.meta_rows(server_url)] == ["accounts"]


@pytest.fixture(params=["postgresql", "mysql"])
def server_url(request, tmp_path):
    from tests.helpers.databases import database

    with database(request.param, str(tmp_path)) as url:
        yield url
