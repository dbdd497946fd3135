"""State only after commit (kill test), connection errors, admin functions, speed print."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from target_dap_sql import admin
from target_dap_sql.connection import parse_connection_string, redact
from target_dap_sql.errors import ConfigError
from tests.target.helpers import DB, GOLDEN, TARGET, error_line, golden_messages, run_target

SCHEMA_LINE = (GOLDEN / "snapshot_upsert.jsonl").read_text().splitlines()[0]


def _record(i: int) -> str:
    rec = dict(golden_messages("incremental_update_delete")[3]["record"], id=i)
    return json.dumps({"type": "RECORD", "stream": "canvas-accounts", "record": rec})


def _state(ts: str) -> str:
    return json.dumps({"type": "STATE", "value": {"bookmarks": {"canvas-accounts": {
        "timestamp": ts, "schema_version": 1}}}})


def test_state_only_after_commit_and_kill(db_url, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"connection_string": db_url}))
    proc = subprocess.Popen([TARGET, "--config", str(cfg)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp_path)
    assert proc.stdin and proc.stdout
    proc.stdin.write((SCHEMA_LINE + "\n" + "\n".join(_record(i) for i in range(1, 6)) + "\n"
                      + _state("2024-05-01T00:00:00Z") + "\n").encode())
    proc.stdin.flush()
    line = proc.stdout.readline()
    assert json.loads(line)["bookmarks"]["canvas-accounts"]["timestamp"] == \
        "2024-05-01T00:00:00Z"
    db = DB(db_url)
    try:
        # the moment the STATE is visible, its rows and table_sync row are committed
        assert db.query(f"SELECT COUNT(*) FROM {db.ref('canvas', 'accounts')}")[0][0] == 5
        assert str(db.table_sync()[0]["timestamp"]).startswith("2024-05-01")
        # more records, then a crash before the next STATE
        proc.stdin.write(("\n".join(_record(i) for i in range(6, 11)) + "\n").encode())
        proc.stdin.flush()
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if db.dialect == "sqlite":
            db.close()
            db = DB(db_url)
        assert db.query(f"SELECT COUNT(*) FROM {db.ref('canvas', 'accounts')}")[0][0] == 5
        assert str(db.table_sync()[0]["timestamp"]).startswith("2024-05-01")
    finally:
        db.close()
        if proc.poll() is None:
            proc.kill()


def test_unreachable_database_one_line_no_password(tmp_path):
    url = "postgresql://someone:s3cr3tpw@127.0.0.1:1/nodb"
    result = run_target(url, tmp_path, "snapshot_upsert")
    assert result.returncode != 0
    line = error_line(result)
    assert "127.0.0.1:1" in line and "PostgreSQL" in line
    assert "s3cr3tpw" not in result.stderr.decode() + result.stdout.decode()
    url = "mysql://someone:s3cr3tpw@127.0.0.1:1/nodb"
    result = run_target(url, tmp_path, "snapshot_upsert")
    line = error_line(result)
    assert result.returncode != 0 and "127.0.0.1:1" in line and "MySQL" in line
    assert "s3cr3tpw" not in result.stderr.decode()


def test_connection_string_forms():
    info = parse_connection_string("postgresql://u:p%40ss@db.example:6543/canvas?sslmode=require")
    assert (info.dialect, info.host, info.port, info.user, info.password, info.database) == \
        ("postgresql", "db.example", 6543, "u", "p@ss", "canvas")
    assert info.param("sslmode") == "require"
    assert "p@ss" not in info.redacted and "***" in info.redacted
    assert parse_connection_string("mariadb://root@h/db").dialect == "mysql"
    assert parse_connection_string("mysql://root@h/db").port == 3306
    assert parse_connection_string("sqlite:///x/y.db").path == "x/y.db"
    assert parse_connection_string("sqlite:////abs/y.db").path == "/abs/y.db"
    assert "secret" not in redact("mysql://a:secret@h:1/d")
    with pytest.raises(ConfigError):
        parse_connection_string("oracle://a@b/c")


def test_missing_driver_message(tmp_path):
    code = ("import sys, builtins\n"
            "real = builtins.__import__\n"
            "def fake(name, *a, **k):\n"
            "    if name.startswith('psycopg2'): raise ImportError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = fake\n"
            "from target_dap_sql.connection import import_driver\n"
            "from target_dap_sql.errors import ConfigError\n"
            "try:\n    import_driver('postgresql')\n"
            "except ConfigError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=GOLDEN.parents[1]).stdout.strip()
    assert out == ("missing dependency: connecting to PostgreSQL needs psycopg2; run: "
                   "pip install 'tap-canvas-data2[postgresql]'")


def test_admin_listdb_state_dropdb(db_url, tmp_path):
    assert run_target(db_url, tmp_path, "snapshot_upsert").returncode == 0
    listed = admin.listdb(db_url)
    assert len(listed) == 1
    entry = listed[0]
    assert (entry["namespace"], entry["table"], entry["rows"], entry["schema_version"]) == \
        ("canvas", "accounts", 4, 1)
    state = admin.state_from_meta(db_url)
    ts = state["bookmarks"]["canvas-accounts"]["timestamp"]
    assert ts == ("2024-01-10T00:00:00Z" if db_url.startswith("mysql")
                  else "2024-01-10T00:00:00.123456Z")
    assert state["bookmarks"]["canvas-accounts"]["schema_version"] == 1
    admin.dropdb(db_url, "canvas", "accounts")
    assert admin.listdb(db_url) == []
    db = DB(db_url)
    try:
        assert not db.exists("canvas", "accounts")
        if db.dialect == "postgresql":  # enum types kept, like dap
            assert db.query("SELECT count(*) FROM pg_type WHERE typname = "
                            "'accounts__workflow_state'")[0][0] == 1
    finally:
        db.close()
