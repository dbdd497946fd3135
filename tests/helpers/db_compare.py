"""Read replicated DAP tables back from PostgreSQL / MySQL / MariaDB and compare them.

Layout (the one `dap initdb` makes, and target-dap-sql must make too):
PostgreSQL schema `<namespace>` table `<table>`; MySQL/MariaDB table `<namespace>__<table>`
in the connection's database. Meta tables: PG `instructure_dap.table_sync` /
`instructure_dap.database_version`, MySQL `instructure_dap__table_sync` /
`instructure_dap__database_version`.

Every value read is normalized to the JSON form of `Sandbox.expected_rows`:
ints, floats, bools (MySQL tinyint -> bool when the property is a JSON-schema boolean),
strings, date-times as `YYYY-MM-DDThh:mm:ss[.ffffff]Z` (fraction only when non-zero),
dates `YYYY-MM-DD`, UUIDs lower-case with dashes (MySQL binary(16) included), json/jsonb
-> parsed dict/list, PG arrays -> lists, enums -> strings, decimals -> float.
Expected rows are put through the same canonical form, so `12.5` and `Decimal("12.50")`,
or `...:05Z` and `...:05.000000Z`, compare equal.

Public functions:
    fetch_rows(url, namespace, table, schema_json=None, key=None) -> {pk: row}
    normalize_rows(rows, schema_json, key=None) -> {pk: row}
    assert_rows_equal(actual, expected, schema_json=None, key=None, datetime_precision=...)
    ddl_facts(url, namespace, table) -> dict (columns, PK, enums, constraints, comments)
    meta_rows(url) -> [table_sync row], database_versions(url) -> [int]

`schema_json` may be a DAP table schema (as served by /schema: properties key/value/meta,
or the `{"schema": ..., "version": ...}` wrapper) or a flat Singer-style schema whose
properties are the columns.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

# --------------------------------------------------------------------------- connections


def dialect_of(url: str) -> str:
    scheme = urlsplit(url).scheme.split("+")[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("mysql", "mariadb"):
        return "mysql"
    if scheme == "sqlite":
        return "sqlite"
    raise ValueError(f"unsupported database URL scheme: {scheme!r}")


@contextmanager
def connect(url: str):
    """A DB-API connection (psycopg2 / mysql-connector / sqlite3) for a database URL."""
    dialect = dialect_of(url)
    if dialect == "postgresql":
        import psycopg2

        parts = urlsplit(url)
        conn = psycopg2.connect(
            host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password) if parts.password else None,
            dbname=parts.path.lstrip("/") or "postgres",
        )
        conn.autocommit = True
    elif dialect == "mysql":
        import mysql.connector

        parts = urlsplit(url)
        conn = mysql.connector.connect(
            host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password) if parts.password else "",
            database=parts.path.lstrip("/"), autocommit=True, use_pure=True,
            time_zone="+00:00",
        )
    else:
        import sqlite3

        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):]
        conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def _query(conn, sql: str, params: tuple = ()) -> list[tuple]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    finally:
        cur.close()


def quote(dialect: str, name: str) -> str:
    """Quote one identifier (embedded quote characters doubled)."""
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def table_name(dialect: str, namespace: str, table: str) -> str:
    """The quoted, qualified name of a replicated table in the given dialect."""
    if dialect == "postgresql":
        return f"{quote(dialect, namespace)}.{quote(dialect, table)}"
    return quote(dialect, f"{namespace}__{table}")


# --------------------------------------------------------------------------- schemas


def column_schemas(schema_json: Mapping[str, Any] | None) -> tuple[dict[str, dict], str | None]:
    """(column -> property schema, key column) from a DAP or a flat schema."""
    if not schema_json:
        return {}, None
    schema = schema_json
    if "schema" in schema and isinstance(schema["schema"], Mapping) and "version" in schema:
        schema = schema["schema"]  # the {"schema", "version"} wrapper of the API
    props = schema.get("properties", {})
    key_obj, value_obj = props.get("key"), props.get("value")
    if (
        isinstance(key_obj, Mapping) and isinstance(value_obj, Mapping)
        and "properties" in key_obj and "properties" in value_obj
    ):
        columns: dict[str, dict] = {}
        columns.update(key_obj["properties"])
        columns.update(value_obj["properties"])
        key = next(iter(key_obj["properties"]), None)
        return columns, key
    key = None
    req = schema.get("key_properties") or schema.get("required") or []
    if len(req) == 1:
        key = req[0]
    return dict(props), key


def _types(prop: Mapping[str, Any]) -> set[str]:
    t = prop.get("type")
    if t is None:
        for member in prop.get("oneOf", []) + prop.get("anyOf", []):
            if isinstance(member, Mapping):
                return _types(member)
        return set()
    return {t} if isinstance(t, str) else set(t)


def _kind(prop: Mapping[str, Any] | None) -> str:
    """The value kind a property holds: integer, number, boolean, datetime, date, time,
    uuid, string, object, array, or any (unknown)."""
    if not prop:
        return "any"
    types = _types(prop) - {"null"}
    if "integer" in types:
        return "integer"
    if "number" in types:
        return "number"
    if "boolean" in types:
        return "boolean"
    if "object" in types:
        return "object"
    if "array" in types:
        return "array"
    if "string" in types:
        fmt = prop.get("format")
        return {"date-time": "datetime", "date": "date", "time": "time", "uuid": "uuid"}.get(
            fmt, "string"
        )
    return "any"


# --------------------------------------------------------------------------- values


def format_datetime(value: dt.datetime) -> str:
    """`YYYY-MM-DDThh:mm:ss[.ffffff]Z` (naive values are UTC; fraction only when non-zero)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def parse_datetime(text: str) -> dt.datetime:
    """Parse an ISO 8601 date-time (Z, offset or naive=UTC) to naive UTC."""
    s = text.strip().replace(" ", "T", 1)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    if "." in s:  # fromisoformat (3.10) wants exactly 3 or 6 fraction digits
        head, rest = s.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        tail = rest[len(digits):]
        s = f"{head}.{(digits + '000000')[:6]}{tail}"
    value = dt.datetime.fromisoformat(s)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _to_text(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    return value


def normalize_value(value: Any, prop: Mapping[str, Any] | None) -> Any:
    """One column value (from a DB driver or from JSON) in canonical JSON form."""
    if value is None:
        return None
    kind = _kind(prop)
    if kind == "integer":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (Decimal, float)) and value == int(value):
            return int(value)
        if isinstance(value, (str, bytes, bytearray)):
            return int(_to_text(value))
        return value
    if kind == "number":
        if isinstance(value, (str, bytes, bytearray)):
            value = _to_text(value)
        return float(value) if not isinstance(value, bool) else value
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, Decimal)):
            return bool(value)
        if isinstance(value, (str, bytes, bytearray)):
            text = _to_text(value).strip().lower()
            return {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}.get(
                text, text
            )
        return value
    if kind == "datetime":
        if isinstance(value, dt.datetime):
            return format_datetime(value)
        if isinstance(value, (str, bytes, bytearray)):
            try:
                return format_datetime(parse_datetime(_to_text(value)))
            except ValueError:
                return _to_text(value)
        return value
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return _to_text(value)
    if kind == "time":
        if isinstance(value, dt.timedelta):  # MySQL TIME
            secs = int(value.total_seconds())
            value = dt.time(secs // 3600, secs // 60 % 60, secs % 60, value.microseconds)
        if isinstance(value, dt.time):
            text = value.strftime("%H:%M:%S")
            if value.microsecond:
                text += f".{value.microsecond:06d}"
            return text
        return _to_text(value)
    if kind == "uuid":
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)) and len(bytes(value)) == 16:
            return str(uuid.UUID(bytes=bytes(value)))
        try:
            return str(uuid.UUID(_to_text(value)))
        except ValueError:
            return _to_text(value)
    if kind in ("object", "array"):
        if isinstance(value, (str, bytes, bytearray)):
            value = json.loads(_to_text(value))
        if kind == "array" and isinstance(value, list):
            item = prop.get("items") if prop else None
            return [normalize_value(v, item) for v in value]
        if kind == "object" and isinstance(value, dict) and prop and prop.get("properties"):
            sub = prop["properties"]
            return {k: normalize_value(v, sub.get(k)) for k, v in value.items()}
        return value
    if kind == "string":
        return _to_text(value)
    # unknown property: keep JSON natives, render driver types
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return _to_text(value)


def normalize_row(row: Mapping[str, Any], columns: Mapping[str, dict]) -> dict[str, Any]:
    return {name: normalize_value(v, columns.get(name)) for name, v in row.items()}


def normalize_rows(
    rows: Iterable[Mapping[str, Any]] | Mapping[Any, Mapping[str, Any]],
    schema_json: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> dict[Any, dict[str, Any]]:
    """Rows (an iterable of dicts, e.g. `Sandbox.expected_rows(...)`, or a {pk: row} dict)
    in canonical form, keyed by the primary key."""
    columns, schema_key = column_schemas(schema_json)
    key = key or schema_key
    if isinstance(rows, Mapping):
        rows = list(rows.values())
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        norm = normalize_row(row, columns)
        if key is None:
            key = next(iter(norm))
        pk = norm[key]
        if pk in out:
            raise AssertionError(f"duplicate primary key {key}={pk!r} in rows")
        out[pk] = norm
    return out


# --------------------------------------------------------------------------- reading tables


def primary_key(url: str, namespace: str, table: str) -> list[str]:
    """Primary key columns of a replicated table, in key order."""
    facts = ddl_facts(url, namespace, table)
    return list(facts["primary_key"]["columns"]) if facts["primary_key"] else []


def fetch_rows(
    url: str,
    namespace: str,
    table: str,
    schema_json: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> dict[Any, dict[str, Any]]:
    """Every row of a replicated table as {pk: {column: canonical value}}.

    Column kinds come from `schema_json` where it names the column; otherwise from the
    database type (so a column dap added but the schema lacks is still readable).
    """
    dialect = dialect_of(url)
    columns, schema_key = column_schemas(schema_json)
    with connect(url) as conn:
        if dialect == "postgresql":
            cols = _query(
                conn,
                "SELECT a.attname, t.typcategory, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                (namespace, table),
            )
            if not cols:
                raise AssertionError(f'table "{namespace}"."{table}" does not exist in {url}')
            select = []
            kinds: dict[str, Mapping[str, Any] | None] = {}
            for name, category, type_text in cols:
                q = quote(dialect, name)
                if category == "A":  # arrays of anything (enum arrays too) -> JSON text
                    select.append(f"array_to_json({q})::text")
                elif category == "E":
                    select.append(f"{q}::text")
                else:
                    select.append(q)
                kinds[name] = columns.get(name) or _pg_fallback(category, type_text)
            rows = _query(
                conn, f"SELECT {', '.join(select)} FROM {table_name(dialect, namespace, table)}"
            )
            names = [c[0] for c in cols]
        elif dialect == "mysql":
            cols = _query(
                conn,
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (f"{namespace}__{table}",),
            )
            if not cols:
                raise AssertionError(f"table `{namespace}__{table}` does not exist in {url}")
            names = [_to_text(c[0]) for c in cols]
            kinds = {}
            for name, data_type, column_type in cols:
                name = _to_text(name)
                kinds[name] = columns.get(name) or _mysql_fallback(
                    _to_text(data_type), _to_text(column_type)
                )
            select = ", ".join(quote(dialect, n) for n in names)
            rows = _query(conn, f"SELECT {select} FROM {table_name(dialect, namespace, table)}")
        else:
            cols = _query(conn, f"PRAGMA table_info({table_name(dialect, namespace, table)})")
            if not cols:
                raise AssertionError(f'table "{namespace}__{table}" does not exist in {url}')
            names = [c[1] for c in cols]
            kinds = {n: columns.get(n) for n in names}
            rows = _query(conn, f"SELECT * FROM {table_name(dialect, namespace, table)}")
        if key is None:
            key = schema_key
        if key is None:
            pk_cols = primary_key(url, namespace, table)
            key = pk_cols[0] if pk_cols else names[0]
    out: dict[Any, dict[str, Any]] = {}
    for raw in rows:
        row = {n: normalize_value(v, kinds.get(n)) for n, v in zip(names, raw, strict=False)}
        out[row[key]] = row
    return out


def _pg_fallback(category: str, type_text: str) -> dict[str, Any]:
    if category == "A" or type_text in ("json", "jsonb"):
        return {"type": "array"} if category == "A" else {}
    if type_text.startswith("timestamp"):
        return {"type": "string", "format": "date-time"}
    if type_text == "date":
        return {"type": "string", "format": "date"}
    if type_text == "uuid":
        return {"type": "string", "format": "uuid"}
    if type_text == "boolean":
        return {"type": "boolean"}
    if type_text in ("bigint", "integer", "smallint"):
        return {"type": "integer"}
    if category == "N":
        return {"type": "number"}
    return {}


def _mysql_fallback(data_type: str, column_type: str) -> dict[str, Any]:
    if data_type in ("datetime", "timestamp"):
        return {"type": "string", "format": "date-time"}
    if data_type == "date":
        return {"type": "string", "format": "date"}
    if data_type == "json":
        return {}
    if column_type == "binary(16)":
        return {"type": "string", "format": "uuid"}
    if data_type in ("bigint", "int", "integer", "smallint", "mediumint"):
        return {"type": "integer"}
    if data_type in ("double", "float", "decimal", "real"):
        return {"type": "number"}
    return {}


# --------------------------------------------------------------------------- comparing


def _datetime_columns(schema_json: Mapping[str, Any] | None) -> set[str]:
    columns, _ = column_schemas(schema_json)
    return {name for name, prop in columns.items() if _kind(prop) == "datetime"}


def _truncate_seconds(value: Any) -> Any:
    if isinstance(value, str) and value.endswith("Z") and "." in value:
        return value.split(".", 1)[0] + "Z"
    return value


def _same(a: Any, b: Any, rel_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b or (rel_tol > 0 and math.isclose(a, b, rel_tol=rel_tol))
    if type(a) is not type(b) and not (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool)
    ):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rel_tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y, rel_tol) for x, y in zip(a, b, strict=False))
    return a == b


def diff_rows(
    actual: Mapping[Any, Mapping[str, Any]],
    expected: Iterable[Mapping[str, Any]] | Mapping[Any, Mapping[str, Any]],
    *,
    schema_json: Mapping[str, Any] | None = None,
    key: str | None = None,
    datetime_precision: Literal["microsecond", "second"] = "microsecond",
    ignore_columns: Iterable[str] = (),
    float_rel_tol: float = 0.0,
    max_items: int = 8,
) -> list[str]:
    """Differences between actual rows ({pk: row}, from fetch_rows) and expected rows
    (normalized here through schema_json); an empty list when equal.

    datetime_precision="second" compares top-level date-time columns (named by
    schema_json) at second precision — for MySQL/MariaDB `datetime` without fsp, which
    drops the fraction (MariaDB truncates; MySQL 8 rounds, which this does not model).
    """
    exp = normalize_rows(expected, schema_json, key)
    act = {pk: dict(row) for pk, row in actual.items()}
    ignore = set(ignore_columns)
    dt_cols = _datetime_columns(schema_json) if datetime_precision == "second" else set()
    if datetime_precision == "second" and schema_json is None:
        raise ValueError(
            "datetime_precision='second' needs schema_json to know the date-time columns"
        )

    problems: list[str] = []
    missing = [pk for pk in exp if pk not in act]
    extra = [pk for pk in act if pk not in exp]
    if missing:
        problems.append(
            f"{len(missing)} expected row(s) missing, "
            f"e.g. keys {sorted(missing, key=repr)[:max_items]}"
        )
    if extra:
        problems.append(
            f"{len(extra)} unexpected row(s), e.g. keys {sorted(extra, key=repr)[:max_items]}"
        )
    mismatched = 0
    column_sets_reported = False
    for pk in sorted((pk for pk in exp if pk in act), key=repr):
        a_row, e_row = act[pk], exp[pk]
        a_cols = set(a_row) - ignore
        e_cols = set(e_row) - ignore
        if a_cols != e_cols:
            if not column_sets_reported:
                problems.append(
                    f"columns differ: only in database {sorted(a_cols - e_cols)}, "
                    f"only in expected {sorted(e_cols - a_cols)}"
                )
                column_sets_reported = True
        diffs = []
        for col in sorted(a_cols & e_cols):
            a, e = a_row[col], e_row[col]
            if col in dt_cols:
                a, e = _truncate_seconds(a), _truncate_seconds(e)
            if not _same(a, e, float_rel_tol):
                diffs.append(f"    {col}: database={a!r} expected={e!r}")
        if diffs:
            mismatched += 1
            if mismatched <= max_items:
                problems.append(f"  key {pk!r}:\n" + "\n".join(diffs))
    if mismatched:
        problems.append(
            f"{mismatched} row(s) differ in values "
            f"(first {min(mismatched, max_items)} shown above)"
        )
    if problems:
        problems.insert(0, f"{len(act)} row(s) in database, {len(exp)} expected")
    return problems


def assert_rows_equal(
    actual: Mapping[Any, Mapping[str, Any]],
    expected: Iterable[Mapping[str, Any]] | Mapping[Any, Mapping[str, Any]],
    *,
    schema_json: Mapping[str, Any] | None = None,
    key: str | None = None,
    datetime_precision: Literal["microsecond", "second"] = "microsecond",
    ignore_columns: Iterable[str] = (),
    float_rel_tol: float = 0.0,
    max_items: int = 8,
    label: str = "",
) -> None:
    """Fail with a readable diff (first few mismatches) unless actual == expected."""
    problems = diff_rows(
        actual, expected, schema_json=schema_json, key=key,
        datetime_precision=datetime_precision, ignore_columns=ignore_columns,
        float_rel_tol=float_rel_tol, max_items=max_items,
    )
    if problems:
        prefix = f"{label}: " if label else ""
        raise AssertionError(prefix + "rows differ\n" + "\n".join(problems))


# --------------------------------------------------------------------------- DDL facts


def ddl_facts(url: str, namespace: str, table: str) -> dict[str, Any]:
    """The DDL of a replicated table as plain JSON-able facts, free of volatile names
    (database name, OIDs), for comparing what `dap` made with what another loader made."""
    dialect = dialect_of(url)
    with connect(url) as conn:
        if dialect == "postgresql":
            return _pg_ddl(conn, namespace, table)
        if dialect == "mysql":
            return _mysql_ddl(conn, namespace, table)
        raise ValueError("ddl_facts supports postgresql and mysql")


def _pg_ddl(conn, namespace: str, table: str) -> dict[str, Any]:
    found = _query(
        conn,
        "SELECT c.oid, obj_description(c.oid, 'pg_class'), c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (namespace, table),
    )
    if not found:
        raise AssertionError(f'table "{namespace}"."{table}" does not exist')
    oid, table_comment, relkind = found[0]
    columns = []
    for row in _query(
        conn,
        "SELECT c.column_name, c.data_type, c.udt_schema, c.udt_name, c.is_nullable, "
        "c.column_default, c.character_maximum_length, c.numeric_precision, c.numeric_scale, "
        "c.datetime_precision, format_type(a.atttypid, a.atttypmod), "
        "col_description(a.attrelid, a.attnum), c.is_identity, c.identity_generation "
        "FROM information_schema.columns c JOIN pg_attribute a "
        "ON a.attrelid = %s AND a.attname = c.column_name "
        "WHERE c.table_schema = %s AND c.table_name = %s ORDER BY c.ordinal_position",
        (oid, namespace, table),
    ):
        (name, data_type, udt_schema, udt_name, nullable, default, char_len, num_prec,
         num_scale, dt_prec, formatted, comment, is_identity, identity_gen) = row
        columns.append({
            "name": name,
            "type": formatted,
            "data_type": data_type,
            "udt_schema": udt_schema,
            "udt_name": udt_name,
            "nullable": nullable == "YES",
            "default": default,
            "character_maximum_length": char_len,
            "numeric_precision": num_prec,
            "numeric_scale": num_scale,
            "datetime_precision": dt_prec,
            "identity": identity_gen if is_identity == "YES" else None,
            "comment": comment,
        })
    constraints = []
    for name, contype, definition in _query(
        conn,
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s ORDER BY conname",
        (oid,),
    ):
        constraints.append({"name": name, "type": contype, "definition": definition})
    pk = _query(
        conn,
        "SELECT con.conname, array_agg(a.attname ORDER BY k.ord) FROM pg_constraint con "
        "CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum "
        "WHERE con.conrelid = %s AND con.contype = 'p' GROUP BY con.conname",
        (oid,),
    )
    indexes = [
        {"name": n, "definition": d.replace(f'"{namespace}".', "").replace(f"{namespace}.", "")}
        for n, d in _query(
            conn,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s "
            "ORDER BY indexname",
            (namespace, table),
        )
    ]
    # enum types: those the columns use (also as array elements) and every other
    # `<table>__*` enum of the namespace (dap also creates enums of nested properties)
    enums: dict[str, list[str]] = {}
    for typname, labels in _query(
        conn,
        "SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_type t "
        "JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid "
        "WHERE n.nspname = %s AND (t.typname LIKE %s OR t.oid IN ("
        "  SELECT CASE WHEN ty.typcategory = 'A' THEN ty.typelem ELSE ty.oid END "
        "  FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid "
        "  WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped)) "
        "GROUP BY t.typname ORDER BY t.typname",
        (namespace, _like_prefix(table) + r"\_\_%", oid),
    ):
        enums[typname] = list(labels)
    return {
        "dialect": "postgresql",
        "schema": namespace,
        "table": table,
        "kind": {"r": "table", "p": "partitioned table", "v": "view"}.get(relkind, relkind),
        "comment": table_comment,
        "columns": columns,
        "primary_key": {"name": pk[0][0], "columns": list(pk[0][1])} if pk else None,
        "constraints": constraints,
        "indexes": indexes,
        "enums": enums,
    }


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("_", r"\_").replace("%", r"\%")


def _mysql_ddl(conn, namespace: str, table: str) -> dict[str, Any]:
    name = f"{namespace}__{table}"
    found = _query(
        conn,
        "SELECT TABLE_COMMENT, ENGINE, TABLE_COLLATION, TABLE_TYPE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (name,),
    )
    if not found:
        raise AssertionError(f"table `{name}` does not exist")
    comment, engine, collation, table_type = (_to_text(v) for v in found[0])
    columns = []
    for row in _query(
        conn,
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, "
        "CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, "
        "CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, COLUMN_COMMENT FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (name,),
    ):
        row = [_to_text(v) for v in row]
        (col, data_type, column_type, nullable, default, char_len, num_prec, num_scale,
         dt_prec, charset, col_collation, extra, col_comment) = row
        columns.append({
            "name": col,
            "type": column_type,
            "data_type": data_type,
            "nullable": nullable == "YES",
            "default": default,
            "character_maximum_length": int(char_len) if char_len is not None else None,
            "numeric_precision": int(num_prec) if num_prec is not None else None,
            "numeric_scale": int(num_scale) if num_scale is not None else None,
            "datetime_precision": int(dt_prec) if dt_prec is not None else None,
            "character_set": charset,
            "collation": col_collation,
            "extra": extra,
            "comment": col_comment,
        })
    pk_rows = _query(
        conn,
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' "
        "ORDER BY ORDINAL_POSITION",
        (name,),
    )
    indexes: dict[str, dict[str, Any]] = {}
    for idx, non_unique, col in _query(
        conn,
        "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        (name,),
    ):
        entry = indexes.setdefault(
            _to_text(idx), {"name": _to_text(idx), "unique": not int(non_unique), "columns": []}
        )
        entry["columns"].append(_to_text(col))
    checks: list[dict[str, Any]] = []
    try:
        for cname, clause in _query(
            conn,
            "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY CONSTRAINT_NAME",
            (name,),
        ):
            checks.append({"name": _to_text(cname), "check": _to_text(clause)})
    except Exception:  # MySQL 8 has no TABLE_NAME there; JSON checks are MariaDB's anyway
        pass
    return {
        "dialect": "mysql",
        "table": name,
        "kind": table_type,
        "engine": engine,
        "collation": collation,
        "comment": comment,
        "columns": columns,
        "primary_key": {"name": "PRIMARY", "columns": [_to_text(r[0]) for r in pk_rows]}
        if pk_rows else None,
        "indexes": sorted(indexes.values(), key=lambda i: i["name"]),
        "checks": checks,
    }


def diff_ddl(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Readable differences between two ddl_facts() results."""
    problems: list[str] = []
    for field in sorted(set(actual) | set(expected)):
        if field == "columns":
            continue
        if actual.get(field) != expected.get(field):
            problems.append(
                f"{field}: actual={actual.get(field)!r} expected={expected.get(field)!r}"
            )
    a_cols = [c["name"] for c in actual.get("columns", [])]
    e_cols = [c["name"] for c in expected.get("columns", [])]
    if a_cols != e_cols:
        problems.append(f"column order/names: actual={a_cols} expected={e_cols}")
    e_by_name = {c["name"]: c for c in expected.get("columns", [])}
    for col in actual.get("columns", []):
        other = e_by_name.get(col["name"])
        if other is None:
            continue
        for attr in sorted(set(col) | set(other)):
            if col.get(attr) != other.get(attr):
                problems.append(
                    f"column {col['name']}.{attr}: "
                    f"actual={col.get(attr)!r} expected={other.get(attr)!r}"
                )
    return problems


def assert_ddl_equal(
    actual: Mapping[str, Any], expected: Mapping[str, Any], label: str = ""
) -> None:
    """Fail with every difference unless two ddl_facts() results are equal."""
    problems = diff_ddl(actual, expected)
    if problems:
        prefix = f"{label}: " if label else ""
        raise AssertionError(prefix + "DDL differs\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- meta tables


def meta_rows(url: str) -> list[dict[str, Any]]:
    """Rows of instructure_dap.table_sync (PG) / instructure_dap__table_sync (MySQL),
    timestamps canonical (naive UTC -> ...Z), schema_description parsed."""
    dialect = dialect_of(url)
    name = (
        '"instructure_dap"."table_sync"' if dialect == "postgresql"
        else "`instructure_dap__table_sync`" if dialect == "mysql"
        else '"instructure_dap__table_sync"'
    )
    cols = ["id", "source_namespace", "source_table", "timestamp", "schema_version",
            "target_schema", "target_table", "schema_description_format", "schema_description"]
    quoted = ", ".join(f"`{c}`" if dialect == "mysql" else f'"{c}"' for c in cols)
    with connect(url) as conn:
        raw = _query(conn, f"SELECT {quoted} FROM {name} ORDER BY 2, 3, 1")
    out = []
    for r in raw:
        row = dict(zip(cols, (_to_text(v) for v in r), strict=False))
        ts = row["timestamp"]
        if not isinstance(ts, dt.datetime):
            ts = parse_datetime(ts)
        row["timestamp"] = format_datetime(ts)
        row["schema_version"] = int(row["schema_version"])
        try:
            row["schema_description"] = json.loads(row["schema_description"])
        except (TypeError, ValueError):
            pass
        out.append(row)
    return out


def database_versions(url: str) -> list[int]:
    """Every `version` in the database_version meta table (dap keeps exactly [1])."""
    dialect = dialect_of(url)
    name = (
        '"instructure_dap"."database_version"' if dialect == "postgresql"
        else "`instructure_dap__database_version`" if dialect == "mysql"
        else '"instructure_dap__database_version"'
    )
    with connect(url) as conn:
        return [int(r[0]) for r in _query(conn, f"SELECT version FROM {name} ORDER BY 1")]
