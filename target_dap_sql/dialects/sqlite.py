"""SQLite (stdlib ``sqlite3``): a dap-shaped database in one file (dap has no SQLite).

Mapping (by type affinity; documented, not dap's since dap cannot write SQLite):

* table ``"<ns>__<table>"``, meta tables ``instructure_dap__table_sync`` / ``__database_version``;
* ``INTEGER`` for bigint/integer/smallint and booleans (0/1);
* ``REAL`` for float32/float64;
* ``TEXT`` for strings, enums (value checked by the target), decimals (exact text),
  date-times (ISO-8601 text as sent, e.g. ``2024-01-02T03:04:05.123456Z``), dates, times,
  UUIDs, and JSON text for nested objects and arrays.

The target enforces what PostgreSQL/MySQL would reject so the three dialects agree: enum
membership, ``maxLength``, integer range, NaN. Type or nullability changes rebuild the
table (SQLite cannot ALTER a column); comments are not stored.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson

from target_dap_sql.ddl import Column, TableDef
from target_dap_sql.dialects.base import (
    BatchResult,
    Dialect,
    LiveColumn,
    LiveTable,
    Renderer,
    Snapshot,
    first_line,
    key_text,
)
from target_dap_sql.errors import BadRecord, ConnectError, RejectedByDatabase

_INT_RANGE = {"bigint": 2**63, "integer": 2**31, "smallint": 2**15}


class SQLiteDialect(Dialect):
    """SQLite: explicit transactions (``BEGIN`` issued by the target), WAL journal."""

    name = "sqlite"
    max_identifier = 64
    identifier_in_bytes = False
    param = "?"

    def connect(self) -> None:
        try:
            # the loader's background flush uses the connection from its own thread, never
            # at the same time as the main thread (Loader.wait), so sharing it is safe
            self.conn = sqlite3.connect(self.info.path, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise ConnectError(f"cannot open SQLite database {self.info.path!r}: "
                               f"{first_line(exc)}; check the path and its directory") from exc

    def execute(self, sql: str, params: tuple | list | None = None) -> Any:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        return self.conn.execute(sql, params or ())

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # ----------------------------------------------------------------- DDL
    def type_sql(self, tdef: TableDef, col: Column) -> str:
        kind = col.type.kind
        if kind in ("bigint", "integer", "smallint", "boolean"):
            return "INTEGER"
        if kind in ("double", "real"):
            return "REAL"
        return "TEXT"

    def type_sig(self, tdef: TableDef, col: Column) -> str:
        return self.type_sql(tdef, col)

    def column_sql(self, tdef: TableDef, col: Column, *, not_null: bool | None = None) -> str:
        """``"c" TYPE[ NOT NULL][ DEFAULT x]``."""
        nn = (not col.nullable) if not_null is None else not_null
        default = self.default_sql(col).replace("TRUE", "1").replace("FALSE", "0") \
            if isinstance(col.default, bool) else self.default_sql(col)
        return f"{self.quote(col.name)} {self.type_sql(tdef, col)}{' NOT NULL' if nn else ''}" \
               f"{default}"

    def create_table_sql(self, tdef: TableDef, name: str | None = None) -> list[str]:
        cols = ", ".join(self.column_sql(tdef, c) for c in tdef.columns)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        ref = name or self.table_ref(tdef)
        return [f"CREATE TABLE {ref} ({cols}, CONSTRAINT {self.quote('pk_' + tdef.table)} "
                f"PRIMARY KEY ({pk}))"]

    def discover(self, tdef: TableDef) -> LiveTable | None:
        name = self.table_name(tdef.namespace, tdef.table)
        rows = self.query(f"PRAGMA table_info({self.quote(name)})")
        if not rows:
            return None
        return LiveTable({r[1]: LiveColumn(r[1], (r[2] or "").upper(), not r[3] and not r[5])
                          for r in rows})

    def evolve_sql(self, tdef: TableDef, live: LiveTable, previous: set[str]) -> list[str]:
        table = self.table_ref(tdef)
        out: list[str] = []
        rebuild = False
        empty: bool | None = None
        for col in tdef.columns:
            current = live.columns.get(self.ident(col.name))
            if current is None:
                if not col.nullable and not col.has_default:
                    if empty is None:
                        empty = not self.table_has_rows(tdef)
                    if empty:
                        rebuild = True
                        continue
                    out.append(f"ALTER TABLE {table} ADD COLUMN "
                               f"{self.column_sql(tdef, col, not_null=False)}")
                else:
                    out.append(f"ALTER TABLE {table} ADD COLUMN {self.column_sql(tdef, col)}")
            elif current.sig != self.type_sig(tdef, col) or (
                    current.nullable != col.nullable and not col.is_key):
                rebuild = True
        wanted = {self.ident(c.name) for c in tdef.columns}
        drops = [n for n in live.columns if n not in wanted and n in
                 {self.ident(p) for p in previous}]
        if rebuild:
            return self._rebuild_sql(tdef, live, set(drops))
        out += [f"ALTER TABLE {table} DROP COLUMN {self.quote(n)}" for n in drops]
        return out

    def _rebuild_sql(self, tdef: TableDef, live: LiveTable, drops: set[str]) -> list[str]:
        """SQLite's documented table rebuild: new table, copy, drop, rename.

        Column order is kept as it is live (new columns at the end, like ADD COLUMN on
        PostgreSQL/MySQL); columns a user added by hand are kept with their declared type.
        """
        table = self.table_ref(tdef)
        temp = self.quote(self.table_name(tdef.namespace, tdef.table) + "__rebuild")
        wanted = {self.ident(c.name): c for c in tdef.columns}
        defs: list[str] = []
        copied: list[str] = []
        for name, live_col in live.columns.items():
            if name in drops:
                continue
            col = wanted.get(name)
            if col is not None:
                defs.append(self.column_sql(tdef, col))
            else:
                defs.append(f"{self.quote(name)} {live_col.sig}"
                            f"{'' if live_col.nullable else ' NOT NULL'}")
            copied.append(self.quote(name))
        has_rows = self.table_has_rows(tdef)
        for col in tdef.columns:
            if self.ident(col.name) not in live.columns:
                nn = not col.nullable and (col.has_default or not has_rows)
                defs.append(self.column_sql(tdef, col, not_null=nn))
        pk = ", ".join(self.quote(k) for k in tdef.key)
        cols = ", ".join(copied)
        return [f"DROP TABLE IF EXISTS {temp}",
                f"CREATE TABLE {temp} ({', '.join(defs)}, CONSTRAINT "
                f"{self.quote('pk_' + tdef.table)} PRIMARY KEY ({pk}))",
                f"INSERT INTO {temp} ({cols}) SELECT {cols} FROM {table}",
                f"DROP TABLE {table}",
                f"ALTER TABLE {temp} RENAME TO "
                f"{self.quote(self.table_name(tdef.namespace, tdef.table))}"]

    # ----------------------------------------------------------------- rendering
    def _converter(self, tdef: TableDef, col: Column) -> Callable[[Any], Any] | None:
        t = col.type
        label = self.label(tdef)

        def bad(v: Any, why: str) -> BadRecord:
            return BadRecord(f"{label}: column {col.name!r}: {why} ({str(v)[:60]!r}); fix the "
                             "record at the source or change the schema")

        if t.kind in _INT_RANGE:
            bound = _INT_RANGE[t.kind]

            def conv(v: Any) -> Any:
                if type(v) is int and not -bound <= v < bound:
                    raise bad(v, f"integer out of range for {t.kind}")
                return v
            return conv
        if t.kind == "boolean":
            return lambda v: int(v) if isinstance(v, bool) else v
        if t.kind in ("double", "real"):
            def conv(v: Any) -> Any:
                if isinstance(v, float) and math.isnan(v):
                    raise bad(v, "NaN cannot be stored (SQLite turns it into NULL)")
                return v
            return conv
        if t.kind == "enum":
            allowed = frozenset(t.values)

            def conv(v: Any) -> Any:
                if v not in allowed:
                    raise bad(v, "value is not in the column's enum; the schema must list it")
                return v
            return conv
        if t.kind in ("varchar", "char"):
            limit = t.length or 0

            def conv(v: Any) -> Any:
                if isinstance(v, str) and len(v) > limit:
                    raise bad(v, f"value longer than {t.kind}({limit})")
                return v
            return conv
        if t.kind in ("json", "array"):
            return lambda v: v if isinstance(v, str) else orjson.dumps(v).decode()
        if t.kind == "decimal":
            return lambda v: v if isinstance(v, str) else (
                repr(v) if isinstance(v, float) else str(v))
        return None

    def renderer(self, tdef: TableDef) -> Renderer:
        names = tdef.column_names
        getter = itemgetter(*names)
        single = len(names) == 1
        key_of = itemgetter(*tdef.key)
        convs = [(i, f) for i, f in ((i, self._converter(tdef, c))
                                     for i, c in enumerate(tdef.columns)) if f is not None]

        def render(rec: dict) -> tuple[Any, tuple]:
            try:
                vals = getter(rec)
                if single:
                    vals = (vals,)
            except KeyError:
                vals = tuple(rec.get(n) for n in names)
            if convs:
                vals = list(vals)
                try:
                    for i, f in convs:
                        v = vals[i]
                        if v is not None:
                            vals[i] = f(v)
                except BadRecord as exc:
                    raise BadRecord(f"{exc} [key {key_text(tdef, key_of(rec))}]") from exc
            return key_of(rec), tuple(vals)

        return Renderer(render=render, key_of=key_of, slow=render)

    # ----------------------------------------------------------------- loading
    def load_batch(self, tdef: TableDef, rows: dict, snapshot: Snapshot | None) -> BatchResult:
        result = BatchResult()
        ups = [v for v in rows.values() if v is not None]
        dels = [k for k, v in rows.items() if v is None]
        multi = len(tdef.key) > 1
        table = self.table_ref(tdef)
        cols = ", ".join(self.quote(n) for n in tdef.column_names)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        marks = ", ".join("?" * len(tdef.columns))
        values = [c for c in tdef.columns if not c.is_key]
        action = ("DO UPDATE SET " + ", ".join(f"{self.quote(c.name)} = excluded."
                                                f"{self.quote(c.name)}" for c in values)
                  if values else "DO NOTHING")
        key_idx = [tdef.column_names.index(k) for k in tdef.key]
        try:
            if ups:
                self.execute("SELECT 1").close()  # opens the transaction
                self.conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
                                      f"ON CONFLICT ({pk}) {action}", ups)
                result.upserted += len(ups)
                if snapshot is not None and snapshot.keys_table:
                    kmarks = ", ".join("?" * len(key_idx))
                    self.conn.executemany(
                        f"INSERT OR IGNORE INTO {snapshot.keys_table} ({pk}) VALUES ({kmarks})",
                        [tuple(r[i] for i in key_idx) for r in ups])
            if dels:
                self.execute("SELECT 1").close()
                cond = " AND ".join(f"{self.quote(k)} = ?" for k in tdef.key)
                cur = self.conn.executemany(f"DELETE FROM {table} WHERE {cond}",
                                            [k if multi else (k,) for k in dels])
                result.deleted += cur.rowcount
        except (sqlite3.IntegrityError, OverflowError, sqlite3.InterfaceError) as exc:
            self.rollback()
            raise RejectedByDatabase(
                f"{self.label(tdef)}: SQLite rejected the batch: {first_line(exc)}; "
                            "nothing of this batch was committed: fix the record at the source "
                            "or change the schema") from exc
        return result

    def _keys_table(self, tdef: TableDef) -> str:
        return "temp." + super()._keys_table(tdef)  # SQLite keeps it in the temp schema

    def begin_snapshot(self, tdef: TableDef, version: Any) -> Snapshot:
        if not self.table_has_rows(tdef):
            return Snapshot(version=version, table_was_empty=True, direct=True)
        keys = self._keys_table(tdef)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        self.execute(f"DROP TABLE IF EXISTS {keys}").close()
        cols = ", ".join(f"{self.quote(k)} {self.type_sql(tdef, tdef.column(k))}"
                         for k in tdef.key)  # same affinity, or the index is not used
        self.execute(f"CREATE TABLE {keys} ({cols}, PRIMARY KEY ({pk}))").close()
        return Snapshot(version=version, table_was_empty=False, keys_table=keys)

    def finish_snapshot(self, tdef: TableDef, snapshot: Snapshot | None) -> int:
        table = self.table_ref(tdef)
        if snapshot is None:
            return self.execute(f"DELETE FROM {table}").rowcount
        if snapshot.table_was_empty or not snapshot.keys_table:
            return 0
        cond = " AND ".join(f"k.{self.quote(c)} = {table}.{self.quote(c)}" for c in tdef.key)
        deleted = self.execute(f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM "
                               f"{snapshot.keys_table} AS k WHERE {cond})").rowcount
        self.end_snapshot_tracking(snapshot)
        return deleted
