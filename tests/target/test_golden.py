"""target-dap-sql as a real subprocess against real PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import json

import pytest

from tests.target.helpers import (
    DB,
    GOLDEN,
    error_line,
    expected_rows,
    model,
    run_target,
    schema_props,
    state_lines,
)

NS, TABLE = "canvas", "accounts"


def _ok(result) -> None:
    assert result.returncode == 0, result.stderr.decode()[-3000:]


def _check_rows(url: str, files: tuple[str, ...], props: dict) -> None:
    db = DB(url)
    try:
        assert db.rows(NS, TABLE, props) == expected_rows(model(*files), props)
    finally:
        db.close()


def test_snapshot_upsert(db_url, tmp_path):
    result = run_target(db_url, tmp_path, "snapshot_upsert")
    _ok(result)
    assert state_lines(result) == [{"bookmarks": {"canvas-accounts": {
        "timestamp": "2024-01-10T00:00:00.123456Z", "schema_version": 1}}}]
    props = schema_props("snapshot_upsert")
    _check_rows(db_url, ("snapshot_upsert",), props)
    db = DB(db_url)
    try:
        assert db.columns(NS, TABLE) == [c for c in props if not c.startswith("_sdc_")]
        sync = db.table_sync()
        assert len(sync) == 1
        row = sync[0]
        assert (row["source_namespace"], row["source_table"], row["target_schema"],
                row["target_table"], row["schema_version"], row["schema_description_format"]) \
            == ("canvas", "accounts", "canvas", "accounts", 1, "json")
        ts = str(row["timestamp"]).replace("T", " ")
        expected_ts = "2024-01-10 00:00:00" if db.dialect == "mysql" else \
            "2024-01-10 00:00:00.123456"
        assert ts == expected_ts
        described = json.loads(row["schema_description"])
        assert set(described["properties"]) == {"key", "value"}
        assert "meta" not in described["properties"]
        assert row["schema_description"] == json.dumps(described, separators=(",", ":"),
                                                       ensure_ascii=False)
        assert [r[0] for r in db.query(f'SELECT "version" FROM '
                                       f'{db.meta_ref("database_version")}')] == [1]
    finally:
        db.close()


def test_incremental_update_delete(db_url, tmp_path):
    _ok(run_target(db_url, tmp_path, "snapshot_upsert"))
    result = run_target(db_url, tmp_path, "incremental_update_delete")
    _ok(result)
    files = ("snapshot_upsert", "incremental_update_delete")
    _check_rows(db_url, files, schema_props("snapshot_upsert"))
    rows = model(*files)
    assert 3 not in rows and 6 not in rows and rows[2]["name"] == "updated"
    db = DB(db_url)
    try:
        sync = db.table_sync()
        assert len(sync) == 1 and str(sync[0]["timestamp"]).startswith("2024-01-11")
    finally:
        db.close()


def test_idempotent(db_url, tmp_path):
    files = ("snapshot_upsert", "incremental_update_delete", "hard_values")
    for _ in range(2):
        for name in files:
            _ok(run_target(db_url, tmp_path, name))
    _check_rows(db_url, files, schema_props("snapshot_upsert"))
    db = DB(db_url)
    try:
        assert len(db.table_sync()) == 1
    finally:
        db.close()


def test_replacement_snapshot(db_url, tmp_path):
    files = ("snapshot_upsert", "incremental_update_delete", "replacement_snapshot")
    for name in files:
        _ok(run_target(db_url, tmp_path, name))
    _check_rows(db_url, files, schema_props("snapshot_upsert"))
    assert sorted(model(*files)) == [1, 2, 8]


def test_empty_replacement_snapshot_empties_table(db_url, tmp_path):
    _ok(run_target(db_url, tmp_path, "snapshot_upsert"))
    lines = (GOLDEN / "snapshot_upsert.jsonl").read_text().splitlines()
    text = lines[0] + "\n" + json.dumps({"type": "ACTIVATE_VERSION", "stream": "canvas-accounts",
                                         "version": 9}) + "\n"
    _ok(run_target(db_url, tmp_path, text))
    db = DB(db_url)
    try:
        assert db.query(f"SELECT COUNT(*) FROM {db.ref(NS, TABLE)}")[0][0] == 0
    finally:
        db.close()


@pytest.mark.parametrize("batch", [None, 2], ids=["one-batch", "batches-of-2"])
def test_hard_values(db_url, tmp_path, batch):
    # batches of 2: every full batch is flushed by the background thread
    result = run_target(db_url, tmp_path, "hard_values",
                        config={"batch_size_rows": batch} if batch else None)
    _ok(result)
    _check_rows(db_url, ("hard_values",), schema_props("hard_values"))


def test_schema_change(db_url, tmp_path):
    _ok(run_target(db_url, tmp_path, "snapshot_upsert"))
    _ok(run_target(db_url, tmp_path, "schema_change"))
    props = schema_props("schema_change")
    db = DB(db_url)
    try:
        cols = db.columns(NS, TABLE)
        # ratio was in the previous schema and is gone; nickname added at the end
        assert "ratio" not in cols and cols[-1] == "nickname"
        rows = db.rows(NS, TABLE, props)
        assert rows[7]["workflow_state"] == "suspended"
        assert rows[7]["i32"] == 5_000_000_000
        assert rows[7]["is_public"] is None
        assert rows[7]["name"] == "x" * 300
        assert rows[7]["nickname"] == "seven"
        assert rows[1]["nickname"] is None
        sync = db.table_sync()
        assert sync[0]["schema_version"] == 2
    finally:
        db.close()
    # re-applying the same schema changes nothing
    result = run_target(db_url, tmp_path, "schema_change")
    _ok(result)
    assert "DDL:" not in result.stderr.decode()


def test_user_column_survives(db_url, tmp_path):
    _ok(run_target(db_url, tmp_path, "snapshot_upsert"))
    db = DB(db_url)
    try:
        db.query(f'ALTER TABLE {db.ref(NS, TABLE)} ADD COLUMN "my_note" '
                 f'{"TEXT" if db.dialect == "sqlite" else "varchar(20)"}')
        if db.dialect == "sqlite":
            db.conn.commit()
    finally:
        db.close()
    _ok(run_target(db_url, tmp_path, "schema_change"))
    db = DB(db_url)
    try:
        assert "my_note" in db.columns(NS, TABLE)
    finally:
        db.close()


BAD = {
    # file: (column named in the error, dialects that accept the value)
    "bad_too_long": ("name", set()),
    "bad_int_range": ("i32", set()),
    "bad_enum": ("workflow_state", set()),
    "bad_nul": ("notes", {"mysql", "sqlite"}),
    "bad_nan": ("score", {"postgresql"}),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_record(db_url, tmp_path, name):
    column, accepted = BAD[name]
    result = run_target(db_url, tmp_path, name)
    db = DB(db_url)
    try:
        count = db.query(f"SELECT COUNT(*) FROM {db.ref(NS, TABLE)}")[0][0]
        if db.dialect in accepted:
            _ok(result)
            assert count == 2
            return
        assert result.returncode != 0
        line = error_line(result)
        assert column in line and "id=2" in line and "canvas-accounts" in line, line
        assert count == 0, "nothing of the failing batch may be committed"
        assert result.stdout == b"", "no STATE after a failure"
        assert db.table_sync() == []
    finally:
        db.close()


MALFORMED = {
    "malformed_json": "input line 3",
    "malformed_record_before_schema": "input line 1",
    "malformed_no_key_properties": "input line 1",
    "malformed_unknown_type": "input line 3",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input(sqlite_url, tmp_path, name):
    result = run_target(sqlite_url, tmp_path, name)
    assert result.returncode != 0
    line = error_line(result)
    assert MALFORMED[name] in line, line
    assert result.stdout == b""


def test_bad_record_key_after_multiline_rows(pg_url, tmp_path):
    """PostgreSQL names the right key even when earlier rows hold raw newlines.

    COPY reports a physical line number; rows whose text spans several lines must not shift
    the key the error names.
    """
    schema = {"type": "SCHEMA", "stream": "canvas-notes", "key_properties": ["id"],
              "schema": {"type": "object", "properties": {
                  "id": {"type": "integer", "format": "int64"},
                  "body": {"type": ["string", "null"], "maxLength": 8}}}}
    lines = [json.dumps(schema)]
    lines += [json.dumps({"type": "RECORD", "stream": "canvas-notes",
                          "record": {"id": i, "body": "a\nb\r\nc"}}) for i in range(1, 21)]
    lines.append(json.dumps({"type": "RECORD", "stream": "canvas-notes",
                             "record": {"id": 21, "body": "far too long"}}))
    result = run_target(pg_url, tmp_path, "\n".join(lines) + "\n")
    assert result.returncode != 0
    line = error_line(result)
    assert "key id=21" in line and "'body'" in line, line
