"""MySQL / MariaDB (mysql-connector-python): dap's DDL, evolution, multi-row upserts.

Session like dap: ``sql_mode = 'ANSI_QUOTES,NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES'``,
``time_zone = '+00:00'``, utf8mb4. Tables are ``"<ns>__<table>"`` in the connection's
database.

Deliberate difference from dap: ``date-time`` columns are ``datetime(6)`` (and ``time``
``time(6)``) so microseconds survive; dap's ``datetime`` drops them (MariaDB truncates,
MySQL 8 rounds). Setting ``mysql_fractional_seconds: false`` gives exactly dap's types.
Loading: each RECORD is rendered once into a SQL row literal; a batch becomes a few
``INSERT ... VALUES (...),(...) ON DUPLICATE KEY UPDATE "c" = VALUES("c")`` statements of at
most ~4 MB, and deletes one ``DELETE ... WHERE pk IN (...)`` per 5 000 keys.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson

from target_dap_sql.connection import import_driver
from target_dap_sql.ddl import ColType, Column, TableDef
from target_dap_sql.dialects.base import (
    BatchResult,
    Dialect,
    LiveColumn,
    LiveTable,
    Renderer,
    Snapshot,
    first_line,
    key_text,
    sql_string,
)
from target_dap_sql.errors import BadRecord, ConnectError, RejectedByDatabase

SQL_MODE = "ANSI_QUOTES,NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES"
MAX_STATEMENT_BYTES = 4 * 1024 * 1024
DELETE_CHUNK = 5000
_INT_WIDTH = re.compile(r"^(bigint|int|smallint|tinyint|mediumint)\(\d+\)")
_AT_ROW = re.compile(r"at row (\d+)")
_COLUMN = re.compile(r"column '([^']+)'|Column '([^']+)'|CONSTRAINT `([^`]+)`")
_DATA_ERRNOS = {1048, 1264, 1265, 1292, 1366, 1406, 1411, 3140, 4025, 1690, 1367}


def _str_literal(value: str) -> str:
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "'" in value:
        value = value.replace("'", "''")
    if "\x00" in value:
        value = value.replace("\x00", "\\0")
    return "'" + value + "'"


def _first_line_comment(text: str | None) -> str | None:
    if not text:
        return None
    return text.splitlines()[0][:1024]


class MySQLDialect(Dialect):
    """MySQL/MariaDB: ``<ns>__<table>``, inline ASCII ENUMs, json for objects and arrays."""

    name = "mysql"
    max_identifier = 64
    identifier_in_bytes = False

    # ----------------------------------------------------------------- connection
    def connect(self) -> None:
        connector = import_driver("mysql")
        info = self.info
        kwargs: dict[str, Any] = dict(
            host=info.host, port=info.port, user=info.user or "root", password=info.password,
            database=info.database, autocommit=False, charset="utf8mb4",
            connection_timeout=15, sql_mode=SQL_MODE, time_zone="+00:00",
        )
        ssl = info.param("ssl") or info.param("sslmode")
        if ssl in ("disable", "disabled"):
            kwargs["ssl_disabled"] = True
        elif ssl in ("verify-ca", "verify-full", "verify_identity"):
            kwargs["ssl_verify_cert"] = True
            kwargs["ssl_verify_identity"] = ssl != "verify-ca"
        try:
            self.conn = connector.connect(**kwargs)
        except connector.Error as exc:
            raise ConnectError(
                f"cannot connect to MySQL at {info.address} (database {info.database!r}, user "
                f"{info.user!r}): {first_line(exc)}; check that the server runs and is reachable, "
                "and the user, password and database in connection_string") from exc
        self._connector = connector
        rows = self.query("SELECT @@max_allowed_packet")
        self.max_statement = max(64 * 1024, min(MAX_STATEMENT_BYTES, int(rows[0][0]) // 2))
        self.commit()

    # ----------------------------------------------------------------- types
    @property
    def _fsp(self) -> str:
        return "(6)" if self.settings.mysql_fractional_seconds else ""

    def type_sql(self, tdef: TableDef, col: Column) -> str:
        return self._type(col.type)

    def _type(self, t: ColType) -> str:
        kind = t.kind
        if kind == "varchar":
            n = t.length or 0
            if n < 65536:
                return f"varchar({n})"
            return "mediumtext" if n < 2**24 else "longtext"
        if kind == "char":
            return f"char({t.length})"
        if kind == "decimal":
            return f"decimal({t.precision}, {t.scale})"
        if kind == "enum":
            values = ", ".join(sql_string(v) for v in t.values)
            return f"ENUM ({values}) CHARACTER SET ascii COLLATE ascii_bin"
        if kind == "timestamp":
            return "datetime" + self._fsp
        if kind == "time":
            return "time" + self._fsp
        return {"bigint": "bigint", "integer": "integer", "smallint": "smallint",
                "double": "double", "real": "real", "boolean": "tinyint",
                "text": "mediumtext", "date": "date", "interval": "varchar(64)",
                "uuid": "binary(16)", "inet": "binary(16)", "array": "json",
                "json": "json"}[kind]

    def type_sig(self, tdef: TableDef, col: Column) -> str:
        t = col.type
        if t.kind == "enum":
            return "enum(" + ",".join(sql_string(v) for v in t.values) + ")"
        sql = self._type(t).lower().replace(" ", "")
        return {"integer": "int", "real": "double", "json": "longtext"}.get(sql, sql)

    @staticmethod
    def _live_sig(column_type: str) -> str:
        if column_type.lower().startswith("enum("):
            return "enum(" + column_type[5:]
        sig = _INT_WIDTH.sub(r"\1", column_type.lower()).replace(" ", "")
        return "longtext" if sig == "json" else sig

    # ----------------------------------------------------------------- DDL
    def column_sql(self, tdef: TableDef, col: Column, *, not_null: bool | None = None) -> str:
        """``"c" type[ NOT NULL][ DEFAULT x][ COMMENT '...']``."""
        nn = (not col.nullable) if not_null is None else not_null
        comment = _first_line_comment(col.comment)
        return (f"{self.quote(col.name)} {self.type_sql(tdef, col)}{' NOT NULL' if nn else ''}"
                f"{self.default_sql(col)}{' COMMENT ' + sql_string(comment) if comment else ''}")

    def create_table_sql(self, tdef: TableDef) -> list[str]:
        cols = ", ".join(self.column_sql(tdef, c) for c in tdef.columns)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        name = self.table_name(tdef.namespace, tdef.table)
        comment = _first_line_comment(tdef.comment)
        return [f"CREATE TABLE {self.table_ref(tdef)} ({cols}, CONSTRAINT "
                f"{self.quote('pk_' + name)} PRIMARY KEY ({pk}))"
                + (f" COMMENT = {sql_string(comment)}" if comment else "")]

    def discover(self, tdef: TableDef) -> LiveTable | None:
        name = self.table_name(tdef.namespace, tdef.table)
        tables = self.query("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE "
                            "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (name,))
        if not tables:
            return None
        rows = self.query(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_COMMENT FROM "
            "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION", (name,))
        columns = {}
        for cname, ctype, nullable, comment in rows:
            ctype = ctype.decode() if isinstance(ctype, (bytes, bytearray)) else ctype
            columns[cname] = LiveColumn(cname, self._live_sig(ctype), nullable == "YES",
                                        comment or None)
        return LiveTable(columns, tables[0][0] or None)

    def evolve_sql(self, tdef: TableDef, live: LiveTable, previous: set[str]) -> list[str]:
        clauses: list[str] = []
        has_rows: bool | None = None
        for col in tdef.columns:
            current = live.columns.get(self.ident(col.name))
            if current is None:
                not_null = not col.nullable
                if not_null and not col.has_default:
                    if has_rows is None:
                        has_rows = self.table_has_rows(tdef)
                    not_null = not has_rows
                clauses.append("ADD COLUMN " + self.column_sql(tdef, col, not_null=not_null))
                continue
            if (current.sig != self.type_sig(tdef, col)
                    or (current.nullable != col.nullable and not col.is_key)
                    or (current.comment or None) != _first_line_comment(col.comment)):
                clauses.append("MODIFY COLUMN " + self.column_sql(tdef, col))
        wanted = {self.ident(c.name) for c in tdef.columns}
        dropped = {self.ident(p) for p in previous}
        for name in live.columns:
            if name not in wanted and name in dropped:
                clauses.append(f"DROP COLUMN {self.quote(name)}")
        comment = _first_line_comment(tdef.comment)
        if (live.comment or None) != comment:
            clauses.append(f"COMMENT = {sql_string(comment or '')}")
        if not clauses:
            return []
        return [f"ALTER TABLE {self.table_ref(tdef)} " + ", ".join(clauses)]

    # ----------------------------------------------------------------- rendering
    def _converter(self, tdef: TableDef, col: Column) -> Callable[[Any], str]:
        kind = col.type.kind
        label = self.label(tdef)
        name = col.name

        def bad(v: Any, why: str) -> BadRecord:
            return BadRecord(f"{label}: column {name!r}: {why} ({str(v)[:60]!r}); fix the "
                             "record at the source or change the schema")

        if kind in ("bigint", "integer", "smallint"):
            def conv(v: Any) -> str:
                if type(v) is int:
                    return str(v)
                if isinstance(v, bool):
                    return "1" if v else "0"
                if isinstance(v, float) and v.is_integer():
                    return str(int(v))
                return _str_literal(str(v))
            return conv
        if kind in ("double", "real", "decimal"):
            def conv(v: Any) -> str:
                if isinstance(v, float):
                    if math.isnan(v) or math.isinf(v):
                        raise bad(v, "MySQL cannot store NaN or Infinity in a number column")
                    return repr(v)
                if isinstance(v, (int, bool)):
                    return str(int(v))
                return _str_literal(str(v))
            return conv
        if kind == "boolean":
            return lambda v: ("1" if v else "0") if isinstance(v, bool) else _str_literal(str(v))
        if kind in ("timestamp", "time"):
            def conv(v: Any) -> str:
                if isinstance(v, str):
                    if v.endswith(("Z", "z")):
                        v = v[:-1]
                    elif len(v) > 19 and v[-6] in "+-" and v[-3] == ":":
                        if v[-6:] not in ("+00:00", "-00:00"):
                            from target_dap_sql.meta import parse_timestamp
                            return "'" + parse_timestamp(v).isoformat(" ") + "'"
                        v = v[:-6]
                    return "'" + v.replace("T", " ") + "'"
                return _str_literal(str(v))
            return conv
        if kind in ("json", "array"):
            return lambda v: _str_literal(v if isinstance(v, str) else orjson.dumps(v).decode())
        if kind == "uuid":
            def conv(v: Any) -> str:
                hexed = str(v).replace("-", "").replace("{", "").replace("}", "").lower()
                if len(hexed) != 32 or any(c not in "0123456789abcdef" for c in hexed):
                    raise bad(v, "not a UUID")
                return "X'" + hexed + "'"
            return conv
        if kind == "inet":
            def conv(v: Any) -> str:
                try:
                    packed = ipaddress.ip_address(str(v)).packed
                except ValueError as exc:
                    raise bad(v, "not an IP address") from exc
                return "X'" + packed.ljust(16, b"\x00").hex() + "'"
            return conv
        return lambda v: _str_literal(v) if type(v) is str else _str_literal(str(v))

    def renderer(self, tdef: TableDef) -> Renderer:
        names = tdef.column_names
        getter = itemgetter(*names)
        single = len(names) == 1
        convs = [self._converter(tdef, c) for c in tdef.columns]
        key_of = itemgetter(*tdef.key)
        pairs = list(zip(convs, range(len(names)), strict=False))

        def render(rec: dict) -> tuple[Any, str]:
            try:
                vals = getter(rec)
                if single:
                    vals = (vals,)
            except KeyError:
                vals = tuple(rec.get(n) for n in names)
            try:
                cells = ["NULL" if vals[i] is None else f(vals[i]) for f, i in pairs]
            except BadRecord as exc:
                raise BadRecord(f"{exc} [key {key_text(tdef, key_of(rec))}]") from exc
            return key_of(rec), "(" + ",".join(cells) + ")"

        return Renderer(render=render, key_of=key_of, slow=render)

    def _key_literals(self, tdef: TableDef, keys: list) -> list[str]:
        convs = [self._converter(tdef, tdef.column(k)) for k in tdef.key]
        if len(convs) == 1:
            conv = convs[0]
            return [conv(k) for k in keys]
        return ["(" + ",".join(f(v) for f, v in zip(convs, k, strict=False)) + ")" for k in keys]

    # ----------------------------------------------------------------- loading
    def _bad_record(self, tdef: TableDef, exc: Exception, keys: list,
                    offset: int) -> RejectedByDatabase:
        text = first_line(exc)
        where = ""
        match = _AT_ROW.search(text)
        if match:
            index = offset + int(match.group(1)) - 1
            if 0 <= index < len(keys):
                where = f", key {key_text(tdef, keys[index])}"
        cm = _COLUMN.search(text)
        col = ""
        if cm:
            col = f", column {next(g for g in cm.groups() if g)!r}"
        return RejectedByDatabase(
            f"{self.label(tdef)}{col}{where}: MySQL rejected the value: {text}; "
            "nothing of this batch was committed: fix the record at the source "
            "or change the schema, then run again")

    def load_batch(self, tdef: TableDef, rows: dict, snapshot: Snapshot | None) -> BatchResult:
        result = BatchResult()
        up_keys = [k for k, v in rows.items() if v is not None]
        del_keys = [k for k, v in rows.items() if v is None]
        table = self.table_ref(tdef)
        cols = ", ".join(self.quote(n) for n in tdef.column_names)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        values = [c for c in tdef.columns if not c.is_key]
        if values:
            tail = " ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{self.quote(c.name)} = VALUES({self.quote(c.name)})" for c in values)
        else:
            tail = f" ON DUPLICATE KEY UPDATE {self.quote(tdef.key[0])} = " \
                   f"{self.quote(tdef.key[0])}"
        head = f"INSERT INTO {table} ({cols}) VALUES "
        cur = self.conn.cursor()
        offset = 0
        try:
            start = 0
            while start < len(up_keys):
                size = len(head) + len(tail)
                end = start
                while end < len(up_keys) and (end == start or size < self.max_statement):
                    size += len(rows[up_keys[end]]) + 1
                    end += 1
                offset = start
                cur.execute(head + ",".join(rows[k] for k in up_keys[start:end]) + tail)
                result.upserted += end - start
                start = end
            if snapshot is not None and snapshot.keys_table and up_keys:
                literals = self._key_literals(tdef, up_keys)
                for i in range(0, len(literals), DELETE_CHUNK):
                    chunk = literals[i:i + DELETE_CHUNK]
                    if len(tdef.key) == 1:
                        chunk = ["(" + lit + ")" for lit in chunk]
                    cur.execute(f"INSERT IGNORE INTO {snapshot.keys_table} ({pk}) VALUES "
                                + ",".join(chunk))
            if del_keys:
                literals = self._key_literals(tdef, del_keys)
                target = pk if len(tdef.key) == 1 else f"({pk})"
                for i in range(0, len(literals), DELETE_CHUNK):
                    cur.execute(f"DELETE FROM {table} WHERE {target} IN ("
                                + ",".join(literals[i:i + DELETE_CHUNK]) + ")")
                    result.deleted += cur.rowcount
        except self._connector.Error as exc:
            self.rollback()
            if getattr(exc, "errno", None) in _DATA_ERRNOS or isinstance(
                    exc, self._connector.DataError):
                raise self._bad_record(tdef, exc, up_keys, offset) from exc
            raise
        finally:
            cur.close()
        return result

    def _keys_table(self, tdef: TableDef) -> str:
        return '"_dap_keys_' + hashlib.sha1(tdef.stream.encode()).hexdigest()[:12] + '"'

    def begin_snapshot(self, tdef: TableDef, version: Any) -> Snapshot:
        if not self.table_has_rows(tdef):
            return Snapshot(version=version, table_was_empty=True, direct=True)
        keys = self._keys_table(tdef)
        cols = ", ".join(f"{self.quote(k)} {self.type_sql(tdef, tdef.column(k))} NOT NULL"
                         for k in tdef.key)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        self.execute(f"DROP TEMPORARY TABLE IF EXISTS {keys}").close()
        self.execute(f"CREATE TEMPORARY TABLE {keys} ({cols}, PRIMARY KEY ({pk}))").close()
        return Snapshot(version=version, table_was_empty=False, keys_table=keys)

    def end_snapshot_tracking(self, snapshot: Snapshot) -> None:
        if snapshot.keys_table:
            self.execute(f"DROP TEMPORARY TABLE IF EXISTS {snapshot.keys_table}").close()

    def finish_snapshot(self, tdef: TableDef, snapshot: Snapshot | None) -> int:
        table = self.table_ref(tdef)
        if snapshot is None:
            cur = self.execute(f"DELETE FROM {table}")
        elif snapshot.table_was_empty or not snapshot.keys_table:
            return 0
        else:
            cond = " AND ".join(f'"k".{self.quote(c)} = "t".{self.quote(c)}' for c in tdef.key)
            first = self.quote(tdef.key[0])
            cur = self.execute(f'DELETE "t" FROM {table} AS "t" LEFT JOIN {snapshot.keys_table} '
                               f'AS "k" ON {cond} WHERE "k".{first} IS NULL')
            deleted = cur.rowcount
            cur.close()
            self.end_snapshot_tracking(snapshot)
            return deleted
        deleted = cur.rowcount
        cur.close()
        return deleted
