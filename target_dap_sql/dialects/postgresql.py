"""PostgreSQL (psycopg2): dap's DDL, catalog-driven evolution, COPY-based bulk load.

Load path: every RECORD is rendered once into a CSV line for ``COPY ... FROM STDIN WITH
(FORMAT csv, NULL 'null', ESCAPE '\\')``. The hot path serialises the row tuple with orjson
and strips the brackets: JSON string escaping (``\\"`` and ``\\\\``) is exactly CSV with a
backslash escape character, ``null`` is the NULL marker, numbers and ``true``/``false`` are
valid input for their columns, and ``timestamp`` ignores the trailing ``Z``. Rows whose JSON
needs control-character escapes (``\\n``, ``\\u0001`` ...) or holds NaN/Infinity are rendered
by a slower, exact Python path. A first snapshot into an empty table is COPYed straight
into the table; everything else goes through a temporary staging table and
``INSERT ... ON CONFLICT (pk) DO UPDATE SET <every value column> = EXCLUDED.<col>``.
"""

from __future__ import annotations

import io
import math
import re
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
    enum_types,
    first_line,
    key_text,
    nested_enum_types,
    sql_string,
)
from target_dap_sql.errors import BadRecord, ConnectError, RejectedByDatabase

_CONTROL_ESCAPE = re.compile(rb"\\[bfnrtu]")
_COPY_OPTIONS = "WITH (FORMAT csv, NULL 'null', ESCAPE '\\')"
_COPY_CONTEXT = re.compile(r"line (\d+)(?:, column ([^:]+))?")


def _csv_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pg_array(value: list) -> str:
    """A PostgreSQL array literal (``{"a","b",NULL}``) for a JSON list of scalars."""
    parts = []
    for item in value:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, bool):
            parts.append("t" if item else "f")
        elif isinstance(item, (int, float)):
            parts.append(_float_text(item) if isinstance(item, float) else str(item))
        elif isinstance(item, (list, dict)):
            parts.append(_csv_string(orjson.dumps(item).decode()))
        else:
            parts.append(_csv_string(str(item)))
    return "{" + ",".join(parts) + "}"


def _raw_controls(out: bytes) -> bytes | None:
    """orjson output with its ``\\n`` ``\\r`` ``\\t`` ``\\b`` ``\\f`` escapes turned into the raw
    characters (valid inside a quoted CSV field); None if other escapes (``\\u00XX``) remain.

    JSON escapes are read left to right, so splitting at ``\\\\`` (an escaped backslash) leaves
    parts in which every backslash starts an escape sequence.
    """
    if b"\\\\" not in out:  # the common case: newlines, maybe quotes
        out = out.replace(b"\\n", b"\n")
        if out.count(b"\\") == out.count(b'\\"'):
            return out
        parts = [out]
    else:
        parts = out.split(b"\\\\")
    for i, part in enumerate(parts):
        if b"\\" not in part:
            continue
        part = (part.replace(b"\\n", b"\n").replace(b"\\r", b"\r").replace(b"\\t", b"\t")
                .replace(b"\\b", b"\x08").replace(b"\\f", b"\x0c"))
        if b"\\u" in part:
            return None
        parts[i] = part
    return b"\\\\".join(parts) if len(parts) > 1 else parts[0]


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _pg_string_literal(value: str) -> str:
    """A literal that keeps newlines readable: E'..' when needed (like pysqlsync)."""
    if any(ch in value for ch in "\n\r\t\\"):
        escaped = (value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
                   .replace("\r", "\\r").replace("\t", "\\t"))
        return "E'" + escaped + "'"
    return sql_string(value)


class PostgreSQLDialect(Dialect):
    """PostgreSQL: schema = namespace, enum types ``"<ns>"."<table>__<col>"``."""

    name = "postgresql"
    max_identifier = 63
    identifier_in_bytes = True

    # ----------------------------------------------------------------- connection
    def connect(self) -> None:
        psycopg2 = import_driver("postgresql")
        info = self.info
        kwargs: dict[str, Any] = dict(
            host=info.host, port=info.port, dbname=info.database, user=info.user or None,
            password=info.password or None, connect_timeout=15,
            application_name="target-dap-sql",
        )
        for key, value in info.params:
            if key in ("ssl", "sslmode"):
                kwargs["sslmode"] = value
            elif key in ("sslrootcert", "sslcert", "sslkey", "connect_timeout"):
                kwargs[key] = value
        try:
            self.conn = psycopg2.connect(**kwargs)
        except psycopg2.Error as exc:
            raise ConnectError(
                f"cannot connect to PostgreSQL at {info.address} (database {info.database!r}, "
                f"user {info.user!r}): {first_line(exc)}; check that the server runs and is "
                "reachable, and the user, password and database in connection_string") from exc
        self.conn.autocommit = False
        self.execute("SET TIME ZONE 'UTC'").close()
        self.conn.commit()
        self._errors = psycopg2.errors
        self._psycopg2 = psycopg2

    # ----------------------------------------------------------------- names
    def ref(self, namespace: str, table: str) -> str:
        return f"{self.quote(namespace)}.{self.quote(table)}"

    def table_name(self, namespace: str, table: str) -> str:
        return self.ident(table)

    def enum_ref(self, tdef: TableDef, t: ColType) -> str:
        """``"ns"."table__col"``."""
        return f"{self.quote(tdef.namespace)}.{self.quote(t.enum_name or '')}"

    # ----------------------------------------------------------------- types
    def type_sql(self, tdef: TableDef, col: Column) -> str:
        return self._type(tdef, col.type)

    def _type(self, tdef: TableDef, t: ColType) -> str:
        kind = t.kind
        if kind == "array":
            assert t.item is not None
            if t.item.kind in ("json", "array"):
                return "jsonb"
            return f"{self._type(tdef, t.item)} ARRAY"
        if kind == "enum":
            return self.enum_ref(tdef, t)
        if kind == "varchar":
            return f"varchar({t.length})"
        if kind == "char":
            return f"char({t.length})"
        if kind == "decimal":
            return f"decimal({t.precision}, {t.scale})"
        return {"bigint": "bigint", "integer": "integer", "smallint": "smallint",
                "double": "double precision", "real": "real", "boolean": "boolean",
                "text": "text", "timestamp": "timestamp", "date": "date", "time": "time",
                "interval": "interval", "uuid": "uuid", "inet": "inet", "json": "jsonb"}[kind]

    def type_sig(self, tdef: TableDef, col: Column) -> str:
        return self._sig(tdef, col.type)

    def _sig(self, tdef: TableDef, t: ColType) -> str:
        kind = t.kind
        if kind == "array":
            assert t.item is not None
            if t.item.kind in ("json", "array"):
                return "jsonb"
            return self._sig(tdef, t.item) + "[]"
        if kind == "enum":
            return f"enum:{tdef.namespace}.{self.ident(t.enum_name or '')}"
        if kind == "varchar":
            return f"character varying({t.length})"
        if kind == "char":
            return f"character({t.length})"
        if kind == "decimal":
            return f"numeric({t.precision},{t.scale})"
        return {"double": "double precision", "timestamp": "timestamp without time zone",
                "time": "time without time zone", "json": "jsonb"}.get(kind, kind)

    # ----------------------------------------------------------------- DDL
    def prepare_types(self, tdef: TableDef) -> None:
        """CREATE SCHEMA, CREATE TYPE ... AS ENUM / ALTER TYPE ... ADD VALUE; committed."""
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(tdef.namespace)}").close()
        for t in enum_types(tdef) + nested_enum_types(tdef):
            name = self.ident(t.enum_name or "")
            rows = self.query(
                "SELECT e.enumlabel FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "LEFT JOIN pg_enum e ON e.enumtypid = t.oid "
                "WHERE n.nspname = %s AND t.typname = %s ORDER BY e.enumsortorder",
                (tdef.namespace, name))
            if not rows:
                values = ", ".join(sql_string(v) for v in t.values)
                self.execute(f"CREATE TYPE {self.enum_ref(tdef, t)} AS ENUM ({values})").close()
                continue
            present = {r[0] for r in rows if r[0] is not None}
            for value in t.values:
                if value not in present:
                    self.execute(f"ALTER TYPE {self.enum_ref(tdef, t)} ADD VALUE IF NOT EXISTS "
                                 f"{sql_string(value)}").close()
        self.commit()

    def column_sql(self, tdef: TableDef, col: Column, *, not_null: bool | None = None) -> str:
        """``"name" type[ NOT NULL][ DEFAULT x]``."""
        nn = (not col.nullable) if not_null is None else not_null
        return (f"{self.quote(col.name)} {self.type_sql(tdef, col)}"
                f"{' NOT NULL' if nn else ''}{self.default_sql(col)}")

    def create_table_sql(self, tdef: TableDef) -> list[str]:
        table = self.table_ref(tdef)
        cols = ", ".join(self.column_sql(tdef, c) for c in tdef.columns)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        statements = [f"CREATE TABLE {table} ({cols}, CONSTRAINT "
                      f"{self.quote('pk_' + tdef.table)} PRIMARY KEY ({pk}))"]
        if tdef.comment:
            statements.append(f"COMMENT ON TABLE {table} IS {_pg_string_literal(tdef.comment)}")
        for col in tdef.columns:
            if col.comment:
                statements.append(f"COMMENT ON COLUMN {table}.{self.quote(col.name)} IS "
                                  f"{_pg_string_literal(col.comment)}")
        return statements

    def discover(self, tdef: TableDef) -> LiveTable | None:
        table = self.table_ref(tdef)
        found = self.query("SELECT to_regclass(%s)::oid, obj_description(to_regclass(%s), "
                           "'pg_class')", (table, table))
        if not found or found[0][0] is None:
            return None
        oid, comment = found[0]
        rows = self.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "col_description(a.attrelid, a.attnum), "
            "COALESCE(et.typtype, t.typtype), COALESCE(etn.nspname, tn.nspname), "
            "COALESCE(et.typname, t.typname), et.oid IS NOT NULL "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "JOIN pg_namespace tn ON tn.oid = t.typnamespace "
            "LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' "
            "LEFT JOIN pg_namespace etn ON etn.oid = et.typnamespace "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (oid,))
        columns: dict[str, LiveColumn] = {}
        for name, fmt, notnull, ccomment, typtype, nsp, typname, is_array in rows:
            sig = fmt
            if typtype == "e":
                sig = f"enum:{nsp}.{typname}" + ("[]" if is_array else "")
            columns[name] = LiveColumn(name, sig, not notnull, ccomment)
        return LiveTable(columns, comment)

    def evolve_sql(self, tdef: TableDef, live: LiveTable, previous: set[str]) -> list[str]:
        table = self.table_ref(tdef)
        out: list[str] = []
        has_rows: bool | None = None
        for col in tdef.columns:
            name = self.ident(col.name)
            qcol = f"{table}.{self.quote(col.name)}"
            current = live.columns.get(name)
            if current is None:
                not_null = not col.nullable
                if not_null and not col.has_default:
                    if has_rows is None:
                        has_rows = self.table_has_rows(tdef)
                    not_null = not has_rows
                out.append(f"ALTER TABLE {table} ADD COLUMN "
                           f"{self.column_sql(tdef, col, not_null=not_null)}")
                if col.comment:
                    out.append(f"COMMENT ON COLUMN {qcol} IS {_pg_string_literal(col.comment)}")
                continue
            if current.sig != self.type_sig(tdef, col):
                typ = self.type_sql(tdef, col)
                out.append(f"ALTER TABLE {table} ALTER COLUMN {self.quote(col.name)} "
                           f"SET DATA TYPE {typ} USING {self.quote(col.name)}::{typ}")
            if current.nullable != col.nullable and not col.is_key:
                action = "DROP NOT NULL" if col.nullable else "SET NOT NULL"
                out.append(f"ALTER TABLE {table} ALTER COLUMN {self.quote(col.name)} {action}")
            if (current.comment or None) != (col.comment or None):
                value = _pg_string_literal(col.comment) if col.comment else "NULL"
                out.append(f"COMMENT ON COLUMN {qcol} IS {value}")
        wanted = {self.ident(c.name) for c in tdef.columns}
        for name in live.columns:
            if name not in wanted and name in {self.ident(p) for p in previous}:
                out.append(f"ALTER TABLE {table} DROP COLUMN {self.quote(name)}")
        if (live.comment or None) != (tdef.comment or None):
            value = _pg_string_literal(tdef.comment) if tdef.comment else "NULL"
            out.append(f"COMMENT ON TABLE {table} IS {value}")
        return out

    # ----------------------------------------------------------------- rendering
    def renderer(self, tdef: TableDef) -> Renderer:
        names = tdef.column_names
        getter = itemgetter(*names)
        single = len(names) == 1
        key_of = itemgetter(*tdef.key)
        specials: list[tuple[int, Any]] = []
        for i, col in enumerate(tdef.columns):
            t = col.type
            nested = t.kind == "array" and t.item is not None and t.item.kind in ("json", "array")
            if t.kind == "json" or nested:
                specials.append((i, _json_text))
            elif t.kind == "array":
                specials.append((i, _pg_array))
        dumps = orjson.dumps
        search = _CONTROL_ESCAPE.search
        label = self.label(tdef)

        def values_of(rec: dict) -> list | tuple:
            try:
                vals = getter(rec)
                if single:
                    vals = (vals,)
            except KeyError:
                vals = tuple(rec.get(n) for n in names)
            if specials:
                vals = list(vals)
                for i, fn in specials:
                    v = vals[i]
                    if v is not None and not isinstance(v, str):
                        vals[i] = fn(v)
            return vals

        def slow(rec: dict) -> tuple[Any, bytes]:
            vals = values_of(rec)
            cells = []
            for name, v in zip(names, vals, strict=False):
                if v is None:
                    cells.append("null")
                elif v is True or v is False:
                    cells.append("true" if v else "false")
                elif isinstance(v, float):
                    cells.append(_float_text(v))
                elif isinstance(v, int):
                    cells.append(str(v))
                elif isinstance(v, str):
                    if "\x00" in v:
                        raise BadRecord(
                            f"{label}: column {name!r}, key {key_text(tdef, key_of(rec))}: the "
                            "string holds a NUL character (\\u0000), which PostgreSQL text "
                            "cannot store; remove it at the source")
                    cells.append(_csv_string(v))
                else:
                    cells.append(_csv_string(_json_text(v)))
            return key_of(rec), ",".join(cells).encode("utf-8")

        def render(rec: dict) -> tuple[Any, bytes]:
            vals = values_of(rec)
            try:
                out = dumps(vals)
            except TypeError:  # an int beyond 64 bits, a non-JSON type
                return slow(rec)
            if search(out) is None:
                return key_of(rec), out[1:-1]
            out = _raw_controls(out)
            if out is None:
                return slow(rec)
            return key_of(rec), out[1:-1]

        return Renderer(render=render, key_of=key_of, slow=slow)

    def row_kinds(self, tdef: TableDef) -> bytes:
        # 'x': nested JSON and arrays get the renderer's own text (null / strings only in C)
        return b"".join(b"x" if c.type.kind in ("json", "array") else b"p" for c in tdef.columns)

    def _key_csv(self, tdef: TableDef, keys: list) -> bytes:
        lines = []
        multi = len(tdef.key) > 1
        for key in keys:
            values = key if multi else (key,)
            lines.append(orjson.dumps(list(values))[1:-1])
        return b"\n".join(lines) + b"\n"

    # ----------------------------------------------------------------- loading
    def _copy(self, cur: Any, target: str, columns: str, data: bytes) -> None:
        cur.copy_expert(f"COPY {target} ({columns}) FROM STDIN {_COPY_OPTIONS}", io.BytesIO(data))

    def _bad_record(self, tdef: TableDef, exc: Exception, keys: list,
                    lines: list[bytes] | None = None) -> RejectedByDatabase:
        diag = getattr(exc, "diag", None)
        context = (getattr(diag, "context", None) or "") if diag else ""
        column = getattr(diag, "column_name", None) if diag else None
        where = ""
        match = _COPY_CONTEXT.search(context)
        if match:
            # COPY's line number counts physical lines (CSV fields may hold raw newlines),
            # so it is not the record number; find the record by bisection instead
            index = self._first_bad_line(tdef, lines) if lines else int(match.group(1)) - 1
            column = column or (match.group(2) or "").strip() or None
            if 0 <= index < len(keys):
                where = f", key {key_text(tdef, keys[index])}"
        col = f", column {column!r}" if column else ""
        return RejectedByDatabase(
            f"{self.label(tdef)}{col}{where}: PostgreSQL rejected the value: {first_line(exc)}; "
            "nothing of this batch was committed: fix the record at the source or change the "
            "schema, then run again")

    def _first_bad_line(self, tdef: TableDef, lines: list[bytes]) -> int:
        """Index of the first rendered row COPY rejects (error path only; rolled back)."""
        cols = ", ".join(self.quote(n) for n in tdef.column_names)
        cur = self.conn.cursor()
        try:
            cur.execute(f"CREATE TEMP TABLE _dap_probe (LIKE {self.table_ref(tdef)})")
            lo, hi = 0, len(lines)  # the first bad row is in lines[lo:hi]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                cur.execute("SAVEPOINT dap_probe")
                try:
                    self._copy(cur, "_dap_probe", cols, b"\n".join(lines[lo:mid]) + b"\n")
                    lo = mid  # the first half loads: the bad row is in the second
                except Exception:  # noqa: BLE001 (any rejection narrows the search)
                    hi = mid
                cur.execute("ROLLBACK TO SAVEPOINT dap_probe")
            return lo
        except Exception:  # noqa: BLE001 (best effort: the message then names no key)
            return -1
        finally:
            cur.close()
            self.rollback()

    def load_batch(self, tdef: TableDef, rows: dict, snapshot: Snapshot | None) -> BatchResult:
        result = BatchResult()
        up_keys = [k for k, v in rows.items() if v is not None]
        del_keys = [k for k, v in rows.items() if v is None]
        table = self.table_ref(tdef)
        cols = ", ".join(self.quote(n) for n in tdef.column_names)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        cur = self.conn.cursor()
        errors = self._errors
        try:
            if up_keys:
                data = b"\n".join(rows[k] for k in up_keys) + b"\n"
                done = False
                if snapshot is not None and snapshot.direct and not del_keys:
                    cur.execute("SAVEPOINT dap_direct")
                    try:
                        self._copy(cur, table, cols, data)
                        result.inserted += len(up_keys)
                        done = True
                        cur.execute("RELEASE SAVEPOINT dap_direct")
                    except errors.UniqueViolation:
                        cur.execute("ROLLBACK TO SAVEPOINT dap_direct")
                        snapshot.direct = False
                if not done:
                    cur.execute(f"CREATE TEMP TABLE _dap_stg (LIKE {table}) ON COMMIT DROP")
                    self._copy(cur, "_dap_stg", cols, data)
                    values = [c for c in tdef.columns if not c.is_key]
                    if values:
                        sets = ", ".join(f"{self.quote(c.name)} = EXCLUDED.{self.quote(c.name)}"
                                         for c in values)
                        action = f"DO UPDATE SET {sets}"
                    else:
                        action = "DO NOTHING"
                    cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _dap_stg "
                                f"ON CONFLICT ({pk}) {action}")
                    result.upserted += len(up_keys)
                    if snapshot is not None and snapshot.keys_table:
                        cur.execute(f"INSERT INTO {snapshot.keys_table} ({pk}) SELECT {pk} "
                                    "FROM _dap_stg ON CONFLICT DO NOTHING")
                    cur.execute("DROP TABLE _dap_stg")
            if del_keys:
                cur.execute(f"CREATE TEMP TABLE _dap_del ON COMMIT DROP AS SELECT {pk} "
                            f"FROM {table} WITH NO DATA")
                self._copy(cur, "_dap_del", pk, self._key_csv(tdef, del_keys))
                cond = " AND ".join(f"t.{self.quote(k)} = d.{self.quote(k)}" for k in tdef.key)
                cur.execute(f"DELETE FROM {table} AS t USING _dap_del AS d WHERE {cond}")
                result.deleted += cur.rowcount
                cur.execute("DROP TABLE _dap_del")
        except (errors.DataError, errors.NotNullViolation, errors.CheckViolation,
                self._psycopg2.errors.CharacterNotInRepertoire) as exc:
            self.rollback()
            if up_keys:
                raise self._bad_record(tdef, exc, up_keys, [rows[k] for k in up_keys]) from exc
            raise self._bad_record(tdef, exc, del_keys) from exc
        finally:
            cur.close()
        return result

    def begin_snapshot(self, tdef: TableDef, version: Any) -> Snapshot:
        if not self.table_has_rows(tdef):
            return Snapshot(version=version, table_was_empty=True, direct=True)
        keys = self._keys_table(tdef)
        pk = ", ".join(self.quote(k) for k in tdef.key)
        self.execute(f"DROP TABLE IF EXISTS {keys}").close()
        self.execute(f"CREATE TEMP TABLE {keys} AS SELECT {pk} FROM {self.table_ref(tdef)} "
                     "WITH NO DATA").close()
        self.execute(f"ALTER TABLE {keys} ADD PRIMARY KEY ({pk})").close()
        return Snapshot(version=version, table_was_empty=False, keys_table=keys)

    def finish_snapshot(self, tdef: TableDef, snapshot: Snapshot | None) -> int:
        table = self.table_ref(tdef)
        if snapshot is None:
            cur = self.execute(f"DELETE FROM {table}")
        elif snapshot.table_was_empty or not snapshot.keys_table:
            return 0
        else:
            cond = " AND ".join(f"k.{self.quote(c)} = t.{self.quote(c)}" for c in tdef.key)
            cur = self.execute(f"DELETE FROM {table} AS t WHERE NOT EXISTS "
                               f"(SELECT 1 FROM {snapshot.keys_table} AS k WHERE {cond})")
            deleted = cur.rowcount
            cur.close()
            self.end_snapshot_tracking(snapshot)
            return deleted
        deleted = cur.rowcount
        cur.close()
        return deleted
