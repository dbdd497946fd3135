"""DAP JSON schema -> Singer JSON schema (see docs/architecture.md, "Singer wire contract").

Pure functions, no I/O and no singer-sdk imports.

A DAP table schema (as served by ``GET /dap/query/{ns}/table/{t}/schema``) looks like::

    {"$schema": "...", "type": "object", "title": "...", "description": "...",
     "properties": {
        "key":   {"type": "object", "properties": {"id": {...}}, "required": ["id"], ...},
        "value": {"type": "object", "properties": {...}, "required": [...], ...},
        "meta":  {"type": "object", "properties": {"ts": {...}, "action": {...}}, ...}},
     "required": ["key", "meta"], ...}

The Singer schema puts key then value properties at the top level (DAP order), expresses
NOT NULL as a type without ``"null"``, lists only the key properties in ``required``, adds
the ``_sdc_deleted_at`` marker and carries the DAP schema (minus ``meta``) in ``x-dap``.
"""

from __future__ import annotations

import copy
import typing as t

DELETED_AT = "_sdc_deleted_at"
DELETED_AT_SCHEMA: dict[str, t.Any] = {"type": ["string", "null"], "format": "date-time"}

_COMBINATORS = ("oneOf", "anyOf")


def stream_name(namespace: str, table: str) -> str:
    """Singer stream name of a DAP table: ``<namespace>-<table>``."""
    return f"{namespace}-{table}"


def split_stream_name(name: str) -> tuple[str, str]:
    """Inverse of :func:`stream_name` (namespaces contain no dash; tables may)."""
    namespace, sep, table = name.partition("-")
    if not sep or not namespace or not table:
        raise ValueError(f"not a DAP stream name (expected '<namespace>-<table>'): {name!r}")
    return namespace, table


def key_columns(dap_schema: dict) -> list[str]:
    """Key (primary key) column names, in DAP order."""
    key = dap_schema.get("properties", {}).get("key") or {}
    return list((key.get("properties") or {}).keys())


def value_columns(dap_schema: dict) -> list[str]:
    """Value column names, in DAP order."""
    value = dap_schema.get("properties", {}).get("value") or {}
    return list((value.get("properties") or {}).keys())


def columns(dap_schema: dict) -> list[str]:
    """All columns of the Singer record (key then value), without ``_sdc_deleted_at``."""
    return key_columns(dap_schema) + value_columns(dap_schema)


def schema_without_meta(dap_schema: dict) -> dict:
    """A deep copy of the DAP schema with the ``meta`` property removed, exactly as dap stores
    it in ``table_sync.schema_description`` (dap pops the property but keeps ``required``)."""
    result = copy.deepcopy(dap_schema)
    props = result.get("properties")
    if isinstance(props, dict):
        props.pop("meta", None)
    return result


def _common_type(members: list[dict]) -> str | None:
    """The single JSON type shared by every member of a oneOf/anyOf, if any."""
    types: set[str] = set()
    for member in members:
        mtype = member.get("type") if isinstance(member, dict) else None
        if isinstance(mtype, str):
            types.add(mtype)
        elif isinstance(mtype, list):
            types.update(x for x in mtype if x != "null")
        else:
            return None
    types.discard("null")
    return types.pop() if len(types) == 1 else None


def make_nullable(prop: dict) -> dict:
    """Return a copy of a column schema that also accepts ``null``.

    - ``type`` gets ``"null"`` appended (``"string"`` -> ``["string", "null"]``);
    - an ``enum`` gets ``None`` appended (otherwise a null value fails validation);
    - a ``oneOf``/``anyOf`` gets a ``{"type": "null"}`` member, and when all its members share
      one type, that type (plus ``"null"``) is also stated at the top so that generic targets
      can pick a column type.
    """
    result = copy.deepcopy(prop)
    ptype = result.get("type")
    if isinstance(ptype, str):
        if ptype != "null":
            result["type"] = [ptype, "null"]
    elif isinstance(ptype, list):
        if "null" not in ptype:
            result["type"] = [*ptype, "null"]
    for comb in _COMBINATORS:
        members = result.get(comb)
        if isinstance(members, list):
            if ptype is None:
                common = _common_type(members)
                if common is not None:
                    result["type"] = [common, "null"]
            if not any(isinstance(m, dict) and m.get("type") == "null" for m in members):
                result[comb] = [*members, {"type": "null"}]
    enum = result.get("enum")
    if isinstance(enum, list) and None not in enum:
        result["enum"] = [*enum, None]
    return result


def _not_null(prop: dict) -> dict:
    result = copy.deepcopy(prop)
    for comb in _COMBINATORS:
        members = result.get(comb)
        if isinstance(members, list) and "type" not in result:
            common = _common_type(members)
            if common is not None:
                result["type"] = common
    return result


def to_singer_schema(
    dap_schema: dict,
    *,
    namespace: str,
    table: str,
    schema_version: int,
) -> dict:
    """Convert a DAP table schema to the Singer stream schema of the wire contract."""
    props = dap_schema.get("properties") or {}
    key = props.get("key") or {}
    value = props.get("value") or {}
    key_props: dict = key.get("properties") or {}
    value_props: dict = value.get("properties") or {}
    value_required = set(value.get("required") or [])

    properties: dict[str, t.Any] = {}
    for name, prop in key_props.items():
        properties[name] = _not_null(prop)
    for name, prop in value_props.items():
        if name in properties:  # pragma: no cover - DAP never repeats a key column
            raise ValueError(f"{namespace}.{table}: column {name!r} is both key and value")
        properties[name] = _not_null(prop) if name in value_required else make_nullable(prop)
    properties[DELETED_AT] = dict(DELETED_AT_SCHEMA)

    return {
        "type": "object",
        "properties": properties,
        "required": list(key_props.keys()),
        "x-dap": {
            "namespace": namespace,
            "table": table,
            "schema_version": schema_version,
            "schema": schema_without_meta(dap_schema),
        },
    }


def select_columns(singer_schema: dict, deselected: t.Iterable[str]) -> dict:
    """Return a copy of a Singer schema without the deselected columns.

    Key columns (``required``) and ``_sdc_deleted_at`` are always kept. ``x-dap`` is kept
    unchanged (it describes the DAP table, not the selection).
    """
    drop = set(deselected) - set(singer_schema.get("required") or []) - {DELETED_AT}
    if not drop:
        return singer_schema
    result = dict(singer_schema)
    result["properties"] = {
        k: v for k, v in singer_schema["properties"].items() if k not in drop
    }
    return result


def schema_version_of(singer_schema: dict) -> int | None:
    """The DAP schema version carried in ``x-dap`` (None if absent)."""
    xdap = singer_schema.get("x-dap") or {}
    version = xdap.get("schema_version")
    return int(version) if version is not None else None
