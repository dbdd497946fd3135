"""What every dialect provides: connection, DDL (create + evolve), batch load, snapshots.

A dialect owns one DB-API connection. Work is done in explicit transactions: every public
method that changes data leaves the transaction open; the loader commits (one batch = one
transaction, and the table_sync rows + pending deletes of a STATE in one transaction).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from target_dap_sql.connection import ConnectionInfo
from target_dap_sql.ddl import ColType, Column, TableDef, col_type, shorten_identifier
from target_dap_sql.errors import SchemaError

log = logging.getLogger("target_dap_sql")

#: the property that marks a RECORD as a delete (the tap's wire contract)
DELETED_AT = "_sdc_deleted_at"


@dataclass
class LiveColumn:
    """A column as found in the database catalog."""

    name: str
    sig: str  # canonical type signature, comparable with Dialect.type_sig()
    nullable: bool
    comment: str | None = None


@dataclass
class LiveTable:
    """A table as found in the database catalog."""

    columns: dict[str, LiveColumn]
    comment: str | None = None


@dataclass
class Snapshot:
    """A replacement snapshot in progress for one stream (ACTIVATE_VERSION pending)."""

    version: Any
    table_was_empty: bool
    keys_table: str | None = None  # temp table holding the keys sent with this version
    direct: bool = False  # COPY straight into the table (first snapshot into an empty table)


@dataclass
class BatchResult:
    """Row counts of one flushed batch."""

    inserted: int = 0  # known to be new rows (load into an empty table)
    upserted: int = 0  # inserted or updated (not told apart)
    deleted: int = 0


@dataclass
class Renderer:
    """Turns a RECORD's ``record`` dict into (key, load row) for one table."""

    render: Callable[[dict], tuple[Any, Any]]
    key_of: Callable[[dict], Any]
    slow: Callable[[dict], tuple[Any, Any]] | None = None  # exact path (NaN, odd values)


@dataclass
class Settings:
    """Target settings a dialect needs."""

    mysql_fractional_seconds: bool = True
    extra: dict = field(default_factory=dict)


def sql_string(value: str) -> str:
    """A standard SQL string literal ('' doubled)."""
    return "'" + value.replace("'", "''") + "'"


def key_text(tdef: TableDef, key: Any) -> str:
    """``id=5`` (or ``a=1, b=2``) for error messages."""
    values = key if len(tdef.key) > 1 else (key,)
    return ", ".join(f"{k}={v!r}" for k, v in zip(tdef.key, values, strict=False))


class Dialect:
    """Base class of the PostgreSQL, MySQL and SQLite dialects."""

    name = "base"
    max_identifier = 63
    identifier_in_bytes = True
    param = "%s"

    def __init__(self, info: ConnectionInfo, settings: Settings | None = None) -> None:
        self.info = info
        self.settings = settings or Settings()
        self.conn: Any = None

    # ----------------------------------------------------------------- connection
    def connect(self) -> None:
        """Open the connection (explicit transactions, UTC session)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection (rolling back anything uncommitted)."""
        if self.conn is not None:
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001
                pass
            try:
                self.conn.close()
            finally:
                self.conn = None

    def commit(self) -> None:
        """Commit the current transaction."""
        self.conn.commit()

    def rollback(self) -> None:
        """Roll back the current transaction."""
        self.conn.rollback()

    def execute(self, sql: str, params: tuple | list | None = None) -> Any:
        """Run one statement; returns the cursor (already executed)."""
        cur = self.conn.cursor()
        cur.execute(sql, params) if params is not None else cur.execute(sql)
        return cur

    def query(self, sql: str, params: tuple | list | None = None) -> list[tuple]:
        """Run a query and fetch all rows."""
        cur = self.execute(sql, params)
        rows = cur.fetchall()
        cur.close()
        return rows

    # ----------------------------------------------------------------- names
    def ident(self, name: str) -> str:
        """``name`` shortened to the dialect's identifier limit."""
        return shorten_identifier(name, self.max_identifier, in_bytes=self.identifier_in_bytes)

    def quote(self, name: str) -> str:
        """A quoted (and, if needed, shortened) identifier."""
        return '"' + self.ident(name).replace('"', '""') + '"'

    def table_name(self, namespace: str, table: str) -> str:
        """Unquoted physical table name (MySQL/SQLite: ``<ns>__<table>``)."""
        return self.ident(f"{namespace}__{table}")

    def table_ref(self, tdef: TableDef) -> str:
        """Quoted reference of the data table."""
        return self.ref(tdef.namespace, tdef.table)

    def ref(self, namespace: str, table: str) -> str:
        """Quoted reference of ``namespace``.``table``."""
        return '"' + self.table_name(namespace, table).replace('"', '""') + '"'

    def label(self, tdef: TableDef) -> str:
        """``stream (table)`` for messages."""
        return f"stream {tdef.stream} (table {self.table_ref(tdef)})"

    # ----------------------------------------------------------------- DDL
    def type_sql(self, tdef: TableDef, col: Column) -> str:
        """The SQL type of a column as dap renders it."""
        raise NotImplementedError

    def type_sig(self, tdef: TableDef, col: Column) -> str:
        """Canonical type signature to compare with :attr:`LiveColumn.sig`."""
        raise NotImplementedError

    def discover(self, tdef: TableDef) -> LiveTable | None:
        """The live table, or None if it does not exist."""
        raise NotImplementedError

    def create_table_sql(self, tdef: TableDef) -> list[str]:
        """Statements creating the table (and its comments)."""
        raise NotImplementedError

    def prepare_types(self, tdef: TableDef) -> None:
        """Create schemas / enum types before the table (PostgreSQL); committed."""

    def evolve_sql(self, tdef: TableDef, live: LiveTable, previous: set[str]) -> list[str]:
        """ALTER statements bringing ``live`` to ``tdef``."""
        raise NotImplementedError

    def ensure_table(self, tdef: TableDef, previous_columns: list[str]) -> list[str]:
        """Create the table or evolve it to ``tdef``, like dap does on every run; committed.

        ``previous_columns`` are the columns of the schema applied before (from
        ``table_sync.schema_description``): only those may be dropped.
        Returns the statements executed.
        """
        self.prepare_types(tdef)
        live = self.discover(tdef)
        if live is None:
            statements = self.create_table_sql(tdef)
        else:
            statements = self.evolve_sql(tdef, live, set(previous_columns))
        try:
            for sql in statements:
                self.execute(sql).close()
            self.commit()
        except Exception as exc:
            self.rollback()
            raise SchemaError(
                f"{self.label(tdef)}: changing the table to the new schema failed: "
                f"{first_line(exc)}; fix the table by hand (or drop it and load a new snapshot)"
            ) from exc
        for sql in statements:
            log.info("DDL: %s", " ".join(sql.split())[:300])
        return statements

    def _keys_table(self, tdef: TableDef) -> str:
        """Quoted name of the side table that records a replacement snapshot's keys."""
        return '"_dap_keys_' + hashlib.sha1(tdef.stream.encode()).hexdigest()[:12] + '"'

    def table_has_rows(self, tdef: TableDef) -> bool:
        """True if the data table holds at least one row."""
        return bool(self.query(f"SELECT 1 FROM {self.table_ref(tdef)} LIMIT 1"))

    def default_sql(self, col: Column) -> str:
        """`` DEFAULT <literal>`` or ''."""
        if not col.has_default:
            return ""
        value = col.default
        if isinstance(value, bool):
            return " DEFAULT TRUE" if value else " DEFAULT FALSE"
        if isinstance(value, (int, float)):
            return f" DEFAULT {value}"
        return f" DEFAULT {sql_string(str(value))}"

    # ----------------------------------------------------------------- loading
    def renderer(self, tdef: TableDef) -> Renderer:
        """Row renderer for ``tdef``."""
        raise NotImplementedError

    #: load-row format of the C record path (``target_dap_sql._rows``): 0 COPY csv, 1 LOAD DATA
    row_style = 0

    def row_kinds(self, tdef: TableDef) -> bytes | None:
        """One ``_rows.c`` kind code per column, or None: this table has no C record path."""
        return None

    def copy_plan(self, tdef: TableDef) -> tuple | None:
        """The table's plan for the C record path (``target_dap_sql._rows``), or None."""
        names = tdef.column_names
        kinds = self.row_kinds(tdef)
        if kinds is None or DELETED_AT in names:  # (a delete marker that is also a column)
            return None
        members = tuple(orjson.dumps(name) + b":" for name in names)
        return members, tuple(names.index(k) for k in tdef.key), kinds, self.row_style

    def load_batch(self, tdef: TableDef, rows: dict, snapshot: Snapshot | None) -> BatchResult:
        """Apply one batch (``key -> row``, ``None`` row = delete); transaction left open."""
        raise NotImplementedError

    def begin_snapshot(self, tdef: TableDef, version: Any) -> Snapshot:
        """Start tracking a replacement snapshot (ACTIVATE_VERSION comes at the end)."""
        raise NotImplementedError

    def finish_snapshot(self, tdef: TableDef, snapshot: Snapshot | None) -> int:
        """Delete the rows not sent with the snapshot's version; returns rows deleted."""
        raise NotImplementedError

    def end_snapshot_tracking(self, snapshot: Snapshot) -> None:
        """Drop the key-tracking table of an abandoned snapshot."""
        if snapshot.keys_table:
            self.execute(f"DROP TABLE IF EXISTS {snapshot.keys_table}").close()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def enum_types(tdef: TableDef) -> list[ColType]:
    """Enum column types of a table (also enum array elements), in column order."""
    out: list[ColType] = []
    for col in tdef.columns:
        t = col.type.item if col.type.kind == "array" else col.type
        if t is not None and t.kind == "enum" and t not in out:
            out.append(t)
    return out


def nested_enum_types(tdef: TableDef) -> list[ColType]:
    """Enums inside nested-object columns, named ``<table>__<column>__<member>``.

    The column itself is JSON, so no column uses these types; dap (pysqlsync) creates them on
    PostgreSQL all the same, and so do we, so that the catalogs are identical.
    """
    props = (tdef.singer_schema or {}).get("properties") or {}
    out: list[ColType] = []

    def walk(prop: dict, path: str) -> None:
        for member, sub in (prop.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            name = f"{path}__{member}"
            t = col_type(sub, tdef.table, name.split("__", 1)[1]) if sub.get("enum") else None
            if t is not None and t.kind == "enum" and len(t.values) > 1:
                out.append(t)
            walk(sub, name)

    for col in tdef.columns:
        prop = props.get(col.name)
        if col.type.kind == "json" and isinstance(prop, dict):
            walk(prop, f"{tdef.table}__{col.name}")
    return out
