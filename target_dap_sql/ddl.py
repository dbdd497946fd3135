"""Singer SCHEMA (+ ``x-dap``) -> a dialect-neutral :class:`TableDef`.

The rules follow what ``dap initdb`` (pysqlsync) derives from a DAP schema
(docs: shared/research/dap-semantics.md §1):

* columns: key properties first, then value properties in schema order; properties
  carrying a JSON-schema ``default`` are moved to the end; ``_sdc_*`` columns are skipped;
* NOT NULL iff the property type has no ``"null"`` (key columns are always NOT NULL);
* type from the JSON-schema keywords (§1.4; precedence for strings: format > enum > maxLength);
* comments: column = title, else description; table = title + "\\n\\n" + description.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from target_dap_sql.errors import MalformedInput, SchemaError

#: Type kinds of :class:`ColType`.
KINDS = (
    "bigint", "integer", "smallint", "double", "real", "decimal", "boolean", "text", "varchar",
    "char", "timestamp", "date", "time", "interval", "uuid", "inet", "enum", "array", "json",
)


@dataclass(frozen=True)
class ColType:
    """A column type independent of the SQL dialect."""

    kind: str
    length: int | None = None  # varchar(n) / char(n)
    precision: int | None = None  # decimal(p, s)
    scale: int | None = None
    values: tuple[str, ...] = ()  # enum values, in schema order
    enum_name: str | None = None  # "<table>__<property>" (PG type name)
    item: ColType | None = None  # array element type


@dataclass
class Column:
    """One table column."""

    name: str
    type: ColType
    nullable: bool
    comment: str | None = None
    default: Any = None
    has_default: bool = False
    is_key: bool = False


@dataclass
class TableDef:
    """A table as dap would create it, plus the Singer stream it comes from."""

    stream: str
    namespace: str
    table: str
    columns: list[Column]
    key: list[str]
    comment: str | None = None
    schema_version: int | None = None
    dap_schema: dict | None = None  # x-dap.schema (the DAP schema minus "meta")
    singer_schema: dict | None = None  # the Singer schema (used when there is no x-dap)
    source_properties: list[str] = field(default_factory=list)

    @property
    def column_names(self) -> list[str]:
        """Column names in table order."""
        return [c.name for c in self.columns]

    @property
    def value_columns(self) -> list[Column]:
        """Non-key columns in table order."""
        return [c for c in self.columns if not c.is_key]

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


def shorten_identifier(name: str, limit: int, *, in_bytes: bool) -> str:
    """Return ``name`` if it fits ``limit``, else a deterministic prefix + ``_`` + 8-hex hash.

    PostgreSQL counts bytes (63), MySQL characters (64). The same function is used for
    tables, columns, enum types and constraints, so a name always maps to the same result.
    """
    size = len(name.encode("utf-8")) if in_bytes else len(name)
    if size <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    prefix = name
    while (len(prefix.encode("utf-8")) if in_bytes else len(prefix)) > limit - 9:
        prefix = prefix[:-1]
    return f"{prefix}_{digest}"


def split_stream_name(stream: str, default_schema: str | None) -> tuple[str, str]:
    """``canvas-accounts`` -> ("canvas", "accounts"); no dash -> (default schema, stream)."""
    if "-" in stream:
        namespace, table = stream.split("-", 1)
        if namespace and table:
            return namespace, table
    return (default_schema or "public"), stream


def _types_of(prop: dict) -> tuple[list[str], bool]:
    """JSON-schema ``type`` as a list without "null", and whether "null" was present."""
    raw = prop.get("type")
    if raw is None:
        if "anyOf" in prop or "oneOf" in prop:
            members = prop.get("anyOf") or prop.get("oneOf") or []
            nullable = any(m.get("type") == "null" for m in members if isinstance(m, dict))
            return ["__union__"], nullable
        return [], True
    types = [raw] if isinstance(raw, str) else list(raw)
    nullable = "null" in types
    return [t for t in types if t != "null"], nullable


def _int_type_by_range(prop: dict) -> str:
    """int16/int32/int64 from minimum/maximum or an integer enum (pysqlsync's rule)."""
    values = prop.get("enum")
    if values:
        low, high = min(values), max(values)
    else:
        low, high = prop["minimum"], prop["maximum"]
    if -(2**15) <= low and high < 2**15:
        return "smallint"
    if -(2**31) <= low and high < 2**31:
        return "integer"
    return "bigint"


def _decimal_type(prop: dict) -> ColType | None:
    """``multipleOf`` + symmetric ``exclusiveMinimum``/``exclusiveMaximum`` -> decimal(p, s)."""
    step = prop.get("multipleOf")
    high = prop.get("exclusiveMaximum")
    low = prop.get("exclusiveMinimum")
    if step is None or high is None or low is None or low != -high or step <= 0 or high <= 0:
        return None
    scale = max(0, round(-math.log10(step)))
    integer_digits = max(0, round(math.log10(high)))
    return ColType("decimal", precision=integer_digits + scale, scale=scale)


def _enum_labels(prop: dict) -> tuple[str, ...]:
    """Enum labels in schema order; a JSON null (how a nullable enum admits NULL) is no label."""
    return tuple(str(v) for v in prop["enum"] if v is not None)


def col_type(prop: dict, table: str, name: str) -> ColType:
    """The :class:`ColType` of one JSON-schema property (dap-semantics §1.4)."""
    types, _ = _types_of(prop)
    if not types:
        if "enum" in prop:
            return ColType("enum", values=_enum_labels(prop), enum_name=f"{table}__{name}")
        return ColType("json")
    kind = types[0] if len(types) == 1 else "__union__"
    if kind == "__union__":
        members = [m for m in (prop.get("oneOf") or prop.get("anyOf") or [])
                   if isinstance(m, dict) and m.get("type") != "null"]
        formats = {m.get("format") for m in members}
        if formats and formats <= {"ipv4", "ipv6"}:
            return ColType("inet")
        # extensible enums (oneOf[enum, string]) and other unions: plain text
        return ColType("text")
    fmt = prop.get("format")
    if kind == "integer":
        if fmt in ("int64", "int32", "int16"):
            return ColType({"int64": "bigint", "int32": "integer", "int16": "smallint"}[fmt])
        if prop.get("enum") or ("minimum" in prop and "maximum" in prop):
            return ColType(_int_type_by_range(prop))
        return ColType("bigint")
    if kind == "number":
        dec = _decimal_type(prop)
        if dec is not None:
            return dec
        return ColType("real" if fmt == "float32" else "double")
    if kind == "boolean":
        return ColType("boolean")
    if kind == "string":
        if "const" in prop:
            return ColType("char", length=len(str(prop["const"])))
        fmt_kind = {"date-time": "timestamp", "date": "date", "time": "time",
                    "duration": "interval", "uuid": "uuid", "ipv4": "inet",
                    "ipv6": "inet"}.get(fmt or "")
        if fmt_kind:
            return ColType(fmt_kind)
        if prop.get("enum"):
            return ColType("enum", values=_enum_labels(prop), enum_name=f"{table}__{name}")
        if prop.get("maxLength") is not None:
            return ColType("varchar", length=int(prop["maxLength"]))
        return ColType("text")
    if kind == "array":
        items = prop.get("items") or {}
        item_types, _ = _types_of(items)
        if not items or "object" in item_types or "array" in item_types or not item_types:
            return ColType("array", item=ColType("json"))
        return ColType("array", item=col_type(items, table, name))
    if kind == "object":
        return ColType("json")
    raise SchemaError(f"column {name!r} of {table!r} has an unsupported JSON-schema type {kind!r}")


def _comment(prop: dict) -> str | None:
    return prop.get("title") or prop.get("description") or None


def _table_comment(*sources: dict | None) -> str | None:
    for src in sources:
        if not src:
            continue
        title, description = src.get("title"), src.get("description")
        if title or description:
            return "\n\n".join(p for p in (title, description) if p)
    return None


def table_def_from_schema(message: dict, default_schema: str | None = None) -> TableDef:
    """Build the :class:`TableDef` of a Singer SCHEMA message."""
    stream = message.get("stream")
    schema = message.get("schema")
    if not isinstance(stream, str) or not stream:
        raise MalformedInput("SCHEMA message without a stream name")
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        raise MalformedInput(f"SCHEMA message for stream {stream!r} has no schema.properties")
    keys = message.get("key_properties")
    if not keys:
        raise MalformedInput(
            f"SCHEMA message for stream {stream!r} has no key_properties: target-dap-sql needs "
            "a primary key to upsert and delete")
    props: dict[str, dict] = schema["properties"]
    missing = [k for k in keys if k not in props]
    if missing:
        raise MalformedInput(f"SCHEMA for stream {stream!r}: key properties {missing} are not "
                             "in schema.properties")
    xdap = schema.get("x-dap") or {}
    if xdap.get("namespace") and xdap.get("table"):
        namespace, table = str(xdap["namespace"]), str(xdap["table"])
    else:
        namespace, table = split_stream_name(stream, default_schema)
    dap_schema = xdap.get("schema") if isinstance(xdap.get("schema"), dict) else None

    columns: list[Column] = []
    defaulted: list[Column] = []
    names = list(keys) + [p for p in props if p not in keys]
    for name in names:
        if name.startswith("_sdc_"):
            continue
        prop = props[name] if isinstance(props[name], dict) else {}
        _, has_null = _types_of(prop)
        is_key = name in keys
        column = Column(
            name=name, type=col_type(prop, table, name), nullable=has_null and not is_key,
            comment=_comment(prop), is_key=is_key,
            default=prop.get("default"), has_default=prop.get("default") is not None,
        )
        (defaulted if column.has_default and not is_key else columns).append(column)
    columns.extend(defaulted)
    version = xdap.get("schema_version")
    return TableDef(
        stream=stream, namespace=namespace, table=table, columns=columns, key=list(keys),
        comment=_table_comment(dap_schema, schema), dap_schema=dap_schema,
        singer_schema={k: v for k, v in schema.items() if k != "x-dap"},
        schema_version=int(version) if isinstance(version, int) else None,
        source_properties=list(props),
    )


def dap_schema_columns(dap_schema: dict | None) -> list[str]:
    """Column names of a DAP schema as stored in ``table_sync.schema_description``."""
    if not dap_schema:
        return []
    props = dap_schema.get("properties", {})
    names: list[str] = []
    for part in ("key", "value"):
        names.extend((props.get(part) or {}).get("properties", {}).keys())
    if not names:  # a Singer-style flat schema
        names = [n for n in props if not n.startswith("_sdc_") and n != "meta"]
    return names
