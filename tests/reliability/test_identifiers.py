"""Hostile identifiers (namespace `edge_cases`): mixed case, spaces, quotes, a semicolon,
reserved words, non-ASCII and a column name longer than 64 characters. The pipe must create
and load the table in every dialect, quoted and shortened safely and the same way on every
run: a second (incremental) run finds the same table and columns, and the rows equal
`expected_rows` after each run."""

from __future__ import annotations

import pytest

from tap_canvas_data2.sandbox import Sandbox
from target_dap_sql.ddl import shorten_identifier
from tests.helpers import db_compare as dbc
from tests.reliability.util import run_pipe, tap_config

NS = "edge_cases"
LIMITS = {"postgresql": (63, True), "mysql": (64, False), "sqlite": (64, False)}


@pytest.fixture(scope="module")
def sb():
    with Sandbox(seed=47, rows_per_object=15) as s:
        yield s


def db_columns(url: str, table: str) -> list[str]:
    """Column names of the replicated table, as the database stores them."""
    d = dbc.dialect_of(url)
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        if d == "postgresql":
            cur.execute("SELECT column_name FROM information_schema.columns WHERE "
                        "table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                        (NS, table))
        elif d == "mysql":
            cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE "
                        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY "
                        "ORDINAL_POSITION", (f"{NS}__{table}",))
        else:
            cur.execute("SELECT name FROM pragma_table_info(?)", (f"{NS}__{table}",))
        cols = [c[0] if isinstance(c[0], str) else c[0].decode() for c in cur.fetchall()]
        cur.close()
    return cols


def expected_by_db_names(sb, url: str, table: str) -> tuple[list[dict], dict]:
    """expected_rows and the schema with column names as the target must store them."""
    d = dbc.dialect_of(url)
    limit, in_bytes = LIMITS[d]
    rename = {}
    schema = sb.schema(NS, table)
    props = schema["schema"]["properties"]
    for part in ("key", "value"):
        for name in props[part]["properties"]:
            rename[name] = name if limit is None else shorten_identifier(
                name, limit, in_bytes=in_bytes)
    rows = [{rename[k]: v for k, v in r.items()} for r in sb.expected_rows(NS, table)]
    flat = {"properties": {rename[k]: v for part in ("key", "value")
                           for k, v in props[part]["properties"].items()},
            "key_properties": [rename[next(iter(props["key"]["properties"]))]]}
    return rows, flat


def test_hostile_names_round_trip(sb, db_url, tmp_path):
    tables = sb.tables(NS)
    assert tables, "the sandbox has no edge_cases table"
    cfg = tap_config(sb, namespaces=[NS], tables=["all"])
    target = {"connection_string": db_url}
    r1 = run_pipe(tmp_path, cfg, target)
    assert r1.ok, r1.describe()
    first = {t: db_columns(db_url, t) for t in tables}
    d = dbc.dialect_of(db_url)
    for t in tables:
        rows, flat = expected_by_db_names(sb, db_url, t)
        assert set(flat["properties"]) <= set(first[t]), (first[t], list(flat["properties"]))
        if LIMITS[d][0] is not None:
            limit, in_bytes = LIMITS[d]
            assert all(len(c.encode() if in_bytes else c) <= limit for c in first[t])
        dbc.assert_rows_equal(dbc.fetch_rows(db_url, NS, t, schema_json=flat), rows,
                              schema_json=flat, ignore_columns=["_sdc_deleted_at"],
                              label=f"first run {t!r}")
        sb.advance(NS, t, inserts=7, updates=9, deletes=4)
    r2 = run_pipe(tmp_path, cfg, target, state=r1.last_state)
    assert r2.ok, r2.describe()
    assert "incremental query" in r2.tap_stderr, "the second run was not incremental"
    for t in tables:
        assert db_columns(db_url, t) == first[t], "the second run changed the columns"
        rows, flat = expected_by_db_names(sb, db_url, t)
        dbc.assert_rows_equal(dbc.fetch_rows(db_url, NS, t, schema_json=flat), rows,
                              schema_json=flat, ignore_columns=["_sdc_deleted_at"],
                              label=f"second run {t!r}")
    meta = [m for m in dbc.meta_rows(db_url) if m["source_namespace"] == NS]
    assert sorted(m["source_table"] for m in meta) == sorted(tables)
    assert all(m["timestamp"][:19] == r2.last_state["bookmarks"][f"{NS}-{m['source_table']}"]
               ["timestamp"][:19] for m in meta), (meta, r2.last_state)
