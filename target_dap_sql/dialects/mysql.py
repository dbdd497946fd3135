"""MySQL / MariaDB (mysql-connector-python): dap's DDL, evolution, multi-row upserts.

Session like dap: ``sql_mode = 'ANSI_QUOTES,NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES'``,
``time_zone = '+00:00'``, utf8mb4. Tables are ``"<ns>__<table>"`` in the connection's
database.

Deliberate difference from dap: ``date-time`` columns are ``datetime(6)`` (and ``time``
``time(6)``) so microseconds survive; dap's ``datetime`` drops them (MariaDB truncates,
MySQL 8 rounds). Setting ``mysql_fractional_seconds: false`` gives exactly dap's types.
Loading: each RECORD is rendered once by a per-table generated function into a line of
``LOAD DATA`` text (tab-separated, ``\\N`` = NULL, backslash escapes). A batch is written to
a temporary file and sent with ``LOAD DATA LOCAL INFILE``: straight into the table for a
first snapshot into an empty table, else into a temporary staging table followed by
``INSERT ... SELECT ... ON DUPLICATE KEY UPDATE "c" = VALUES("c")``. With LOCAL the server
turns data errors into warnings, so any warning fails the batch (rolled back) with the
server's message, row and column, as a strict INSERT would. Deletes are one
``DELETE ... WHERE pk IN (...)`` per 5 000 keys. Servers with ``local_infile`` off get
multi-row ``INSERT ... VALUES ... ON DUPLICATE KEY UPDATE`` statements of at most ~4 MB.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tempfile
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
_TSV_NULL = "\\N"
# column kind -> code of the C record path (_rows.c, my_cell); other kinds: b"x" (null only)
_ROW_KINDS = {"bigint": b"i", "integer": b"i", "smallint": b"i", "double": b"f", "real": b"f",
              "decimal": b"f", "boolean": b"b", "timestamp": b"t", "uuid": b"u", "json": b"j",
              "array": b"j",
              **dict.fromkeys(("varchar", "char", "text", "enum", "date", "interval"), b"s")}
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                              "\x00": "\\0"})
_LOAD_OPTIONS = ("CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' "
                 "LINES TERMINATED BY '\\n'")
_TMP_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


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
            allow_local_infile=True,
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
        rows = self.query("SELECT @@max_allowed_packet, @@local_infile")
        self.max_statement = max(64 * 1024, min(MAX_STATEMENT_BYTES, int(rows[0][0]) // 2))
        self.local_infile = str(rows[0][1]).upper() in ("1", "ON")
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

    def _tsv_converter(self, tdef: TableDef, col: Column) -> Callable[[Any], str]:
        """Value -> LOAD DATA text (unescaped; the caller escapes)."""
        kind = col.type.kind
        if kind in ("uuid", "inet"):  # hex digits, loaded through UNHEX(@var)
            conv = self._converter(tdef, col)
            if kind == "uuid":
                def hex_uuid(v: Any) -> str:
                    if type(v) is str and len(v) == 36:
                        hexed = v.replace("-", "")
                        if _HEX32.fullmatch(hexed):
                            return hexed
                    return conv(v)[2:-1]
                return hex_uuid
            return lambda v: conv(v)[2:-1]
        if kind == "boolean":
            return lambda v: ("1" if v else "0") if isinstance(v, bool) else str(v)
        if kind in ("json", "array"):
            return lambda v: v if isinstance(v, str) else orjson.dumps(v).decode()
        if kind in ("varchar", "char", "text", "enum", "date", "interval"):
            return lambda v: v if type(v) is str else str(v)
        conv = self._converter(tdef, col)  # numbers and times: SQL literal without quotes

        times = kind in ("timestamp", "time")

        def unquote(v: Any) -> str:
            text = conv(v)
            if text[:1] == "'":  # a quoted literal: a time as text, or a string in a number
                return text[1:-1] if times and isinstance(v, str) else str(v)
            return text
        return unquote

    def _tsv_renderer(self, tdef: TableDef) -> Renderer:
        """A generated function per table: record -> (key, LOAD DATA line as UTF-8)."""
        names = tdef.column_names
        n = len(names)
        key_of = itemgetter(*tdef.key)
        label = self.label(tdef)
        convs = [self._tsv_converter(tdef, c) for c in tdef.columns]
        env: dict[str, Any] = {"getter": itemgetter(*names) if n > 1 else None,
                               "names": names, "key_of": key_of, "N": _TSV_NULL, "X": "\x01",
                               "ESC": _TSV_ESCAPES, "BadRecord": BadRecord,
                               "key_text": key_text, "tdef": tdef, "float": float, "int": int,
                               "str": str, "type": type, "repr": repr}
        exprs = []
        for i, col in enumerate(tdef.columns):
            env[f"c{i}"] = convs[i]
            x = f"v[{i}]"
            kind = col.type.kind
            if kind in ("bigint", "integer", "smallint"):
                e = f"(str({x}) if type({x}) is int else c{i}({x}))"
            elif kind in ("double", "real", "decimal"):
                e = (f"(repr({x}) if type({x}) is float and {x} - {x} == 0.0 else "
                     f"str({x}) if type({x}) is int else c{i}({x}))")
            elif kind == "boolean":
                e = f"('1' if {x} is True else '0' if {x} is False else c{i}({x}))"
            elif kind == "timestamp":
                # MySQL reads the 'T' separator itself; only the zone designator goes
                e = f"({x}[:-1] if type({x}) is str and {x}[-1:] == 'Z' else c{i}({x}))"
            elif kind in ("varchar", "char", "text", "enum", "date", "interval"):
                e = f"({x} if type({x}) is str else c{i}({x}))"
            else:
                e = f"c{i}({x})"
            exprs.append(f"X if {x} is None else {e}")
        body = ",\n            ".join(exprs)
        src = f"""
def values_of(rec):
    if getter is None:
        return (rec.get(names[0]),)
    try:
        return getter(rec)
    except KeyError:
        return tuple(rec.get(name) for name in names)

def render(rec):
    v = values_of(rec)
    try:
        parts = (
            {body},
        )
    except BadRecord as exc:
        raise BadRecord(f"{{exc}} [key {{key_text(tdef, key_of(rec))}}]") from exc
    line = "\\t".join(parts)
    nulls = v.count(None)
    if ("\\\\" in line or "\\n" in line or "\\r" in line or "\\x00" in line
            or line.count("\\t") != {n - 1} or line.count("\\x01") != nulls):
        return key_of(rec), escaped(parts, v, nulls).encode()
    # UTF-8 bytes: a str holding one non-Latin-1 character takes 2-4 bytes per character
    return key_of(rec), (line.replace("\\x01", N) if nulls else line).encode()

def escaped(parts, v, nulls):
    line = "\\x00".join(parts)
    if line.count("\\x00") == {n - 1} and line.count("\\x01") == nulls:
        return (line.replace("\\\\", "\\\\\\\\").replace("\\t", "\\\\t")
                .replace("\\n", "\\\\n").replace("\\r", "\\\\r")
                .replace("\\x00", "\\t").replace("\\x01", N))
    return "\\t".join(N if x is None else p.translate(ESC) for p, x in zip(parts, v))
"""
        env["CONVS"] = convs
        exec(compile(src, f"<mysql renderer {label}>", "exec"), env)  # noqa: S102
        return Renderer(render=env["render"], key_of=key_of, slow=env["render"])

    def renderer(self, tdef: TableDef) -> Renderer:
        if getattr(self, "local_infile", False):
            return self._tsv_renderer(tdef)
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

    row_style = 1

    def row_kinds(self, tdef: TableDef) -> bytes | None:
        """The same conversions as ``_tsv_renderer`` for the kinds ``_rows.c`` takes."""
        if not getattr(self, "local_infile", False):  # INSERT statements instead
            return None
        return b"".join(_ROW_KINDS.get(c.type.kind, b"x") for c in tdef.columns)

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

    def _load_data(self, cur: Any, table: str, tdef: TableDef, path: str) -> list[tuple]:
        """``LOAD DATA LOCAL INFILE`` of a file of rendered lines; returns the warnings."""
        targets, sets = [], []
        for i, col in enumerate(tdef.columns):
            if col.type.kind in ("uuid", "inet"):
                targets.append(f"@v{i}")
                sets.append(f"{self.quote(col.name)} = UNHEX(@v{i})")
            else:
                targets.append(self.quote(col.name))
        sql = (f"LOAD DATA LOCAL INFILE {sql_string(path)} INTO TABLE {table} {_LOAD_OPTIONS} "
               f"({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else ""))
        cur.execute(sql)
        if not getattr(cur, "warning_count", 1):
            return []
        cur.execute("SHOW WARNINGS LIMIT 20")
        return [w for w in cur.fetchall() if str(w[0]).lower() != "note"]

    def _load_batch_infile(self, tdef: TableDef, rows: dict,
                           snapshot: Snapshot | None) -> BatchResult:
        result = BatchResult()
        up_keys = [k for k, v in rows.items() if v is not None]
        del_keys = [k for k, v in rows.items() if v is None]
        table = self.table_ref(tdef)
        cols = ", ".join(self.quote(n) for n in tdef.column_names)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        cur = self.conn.cursor()
        path = None
        try:
            if up_keys:
                fd, path = tempfile.mkstemp(prefix="target-dap-sql-", suffix=".tsv",
                                            dir=_TMP_DIR)
                with os.fdopen(fd, "wb") as f:
                    for i in range(0, len(up_keys), 5000):
                        f.write(b"\n".join([rows[k] for k in up_keys[i:i + 5000]]) + b"\n")
                done = False
                if snapshot is not None and snapshot.direct and not del_keys:
                    cur.execute("SAVEPOINT dap_direct")
                    warnings = self._load_data(cur, table, tdef, path)
                    if not warnings:
                        result.inserted += len(up_keys)
                        done = True
                        cur.execute("RELEASE SAVEPOINT dap_direct")
                    else:
                        cur.execute("ROLLBACK TO SAVEPOINT dap_direct")
                        if not any(w[1] == 1062 for w in warnings):  # not a duplicate key
                            raise self._warning_error(tdef, warnings, up_keys)
                        snapshot.direct = False
                if not done:
                    cur.execute("DROP TEMPORARY TABLE IF EXISTS _dap_stg")
                    cur.execute(f"CREATE TEMPORARY TABLE _dap_stg LIKE {table}")
                    warnings = self._load_data(cur, "_dap_stg", tdef, path)
                    if warnings:
                        raise self._warning_error(tdef, warnings, up_keys)
                    values = [c for c in tdef.columns if not c.is_key]
                    if values:
                        tail = " ON DUPLICATE KEY UPDATE " + ", ".join(
                            f"{self.quote(c.name)} = VALUES({self.quote(c.name)})"
                            for c in values)
                    else:
                        tail = (f" ON DUPLICATE KEY UPDATE {self.quote(tdef.key[0])} = "
                                f"{self.quote(tdef.key[0])}")
                    cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _dap_stg"
                                + tail)
                    result.upserted += len(up_keys)
                    if snapshot is not None and snapshot.keys_table:
                        cur.execute(f"INSERT IGNORE INTO {snapshot.keys_table} ({pk}) "
                                    f"SELECT {pk} FROM _dap_stg")
                    cur.execute("DROP TEMPORARY TABLE _dap_stg")
            if del_keys:
                self._delete_keys(cur, tdef, table, pk, del_keys, result)
        except RejectedByDatabase:
            self.rollback()
            raise
        except self._connector.Error as exc:
            self.rollback()
            if getattr(exc, "errno", None) in _DATA_ERRNOS or isinstance(
                    exc, self._connector.DataError):
                raise self._bad_record(tdef, exc, up_keys, 0) from exc
            raise
        finally:
            cur.close()
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        return result

    def _warning_error(self, tdef: TableDef, warnings: list[tuple],
                       keys: list) -> RejectedByDatabase:
        level, code, message = warnings[0][:3]
        return self._bad_record(tdef, RuntimeError(f"{code} ({level}): {message}"), keys, 0)

    def _delete_keys(self, cur: Any, tdef: TableDef, table: str, pk: str, del_keys: list,
                     result: BatchResult) -> None:
        literals = self._key_literals(tdef, del_keys)
        target = pk if len(tdef.key) == 1 else f"({pk})"
        for i in range(0, len(literals), DELETE_CHUNK):
            cur.execute(f"DELETE FROM {table} WHERE {target} IN ("
                        + ",".join(literals[i:i + DELETE_CHUNK]) + ")")
            result.deleted += cur.rowcount

    def load_batch(self, tdef: TableDef, rows: dict, snapshot: Snapshot | None) -> BatchResult:
        if getattr(self, "local_infile", False):
            return self._load_batch_infile(tdef, rows, snapshot)
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
