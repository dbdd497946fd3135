"""Table definitions of the sandbox and their DAP JSON schemas.

The definitions live in ``tables/<namespace>.<name>.json`` (a compact, hand-checked form of
the column lists in Instructure's ERD, with invented enum values). This module turns them into
the JSON schema ``GET /dap/query/{ns}/table/{t}/schema`` serves. Only keywords the official
client's schema reader (strong_typing ``JsonSchema*`` dataclasses) accepts are emitted: it
deserializes strictly, so e.g. ``pattern``, ``nullable`` or ``x-...`` would break ``dap initdb``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"

#: Column kinds understood by the generator and the encoders.
KINDS = {
    "bigint", "integer", "varchar", "text", "timestamp", "date", "uuid", "double",
    "boolean", "decimal", "enum", "array", "object",
}

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass
class Column:
    """One property of ``key``/``value`` (or a member of a nested object, or array items)."""

    name: str
    kind: str
    nullable: bool = True
    max_length: int | None = None  # varchar(n): characters, not bytes
    values: list[str] | None = None  # enum values; the first one is always __dap_unspecified__
    precision: int | None = None  # decimal(p, s)
    scale: int | None = None
    items: Column | None = None  # array element
    properties: list[Column] | None = None  # nested object members
    title: str | None = None
    description: str | None = None
    default: Any = None
    references: str | None = None  # referenced table in the same namespace (ids drawn from it)
    #: data-clock time (µs) the column was added by ``bump_schema``; rows whose last change is
    #: older carry NULL in it (DAP does not back-fill: only rows written afterwards have it).
    added_at: int | None = None

    @classmethod
    def from_def(cls, d: dict[str, Any]) -> Column:
        """Build a column from its ``tables/*.json`` form (``type`` like ``varchar(255)``)."""
        t = d["type"]
        col = cls(name=d["name"], kind=t, nullable=d.get("nullable", True),
                  title=d.get("title"), description=d.get("description"),
                  default=d.get("default"), references=d.get("references"))
        m = re.fullmatch(r"varchar\((\d+)\)", t)
        if m:
            col.kind, col.max_length = "varchar", int(m.group(1))
        m = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", t)
        if m:
            col.kind, col.precision, col.scale = "decimal", int(m.group(1)), int(m.group(2))
        if t == "enum":
            col.values = list(d["values"])
            if not col.values or col.values[0] != "__dap_unspecified__":
                raise ValueError(f"enum {d['name']}: first value must be __dap_unspecified__")
        if t == "array":
            col.items = cls.from_def({"name": "items", **d["items"], "nullable": False})
        if t == "object":
            col.properties = [cls.from_def(p) for p in d["properties"]]
        if col.kind not in KINDS:
            raise ValueError(f"column {d['name']}: unknown type {t!r}")
        return col

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of this column, as DAP serves it."""
        s: dict[str, Any]
        k = self.kind
        if k == "bigint":
            s = {"type": "integer", "format": "int64"}
        elif k == "integer":
            s = {"type": "integer", "format": "int32"}
        elif k == "varchar":
            s = {"type": "string", "maxLength": self.max_length}
        elif k == "text":
            s = {"type": "string"}
        elif k == "timestamp":
            s = {"type": "string", "format": "date-time"}
        elif k == "date":
            s = {"type": "string", "format": "date"}
        elif k == "uuid":
            s = {"type": "string", "format": "uuid"}
        elif k == "double":
            s = {"type": "number", "format": "float64"}
        elif k == "boolean":
            s = {"type": "boolean"}
        elif k == "decimal":
            # strong_typing reads decimal(p, s) back from a symmetric exclusive range 10^(p-s)
            # and multipleOf 10^-s; anything else would become a double.
            bound = 10 ** (self.precision - self.scale)
            s = {"type": "number", "multipleOf": 10.0 ** -self.scale if self.scale else 1,
                 "exclusiveMinimum": -bound, "exclusiveMaximum": bound}
        elif k == "enum":
            s = {"type": "string", "enum": list(self.values or [])}
        elif k == "array":
            assert self.items is not None
            s = {"type": "array", "items": self.items.json_schema()}
        else:  # object
            assert self.properties is not None
            s = object_schema(self.properties)
        if self.title:
            s["title"] = self.title
        if self.description:
            s["description"] = self.description
        if self.default is not None:
            s["default"] = self.default
        return s

    def leaves(self, prefix: str) -> list[tuple[str, Column]]:
        """Expanded-mode columns: ``(header name, column)``; nested objects are split."""
        if self.kind == "object" and self.properties is not None:
            out: list[tuple[str, Column]] = []
            for p in self.properties:
                out.extend(p.leaves(f"{prefix}.{p.name}"))
            return out
        return [(prefix, self)]


def object_schema(props: list[Column]) -> dict[str, Any]:
    """An object node: properties in order, required = the non-nullable ones."""
    s: dict[str, Any] = {"type": "object",
                         "properties": {p.name: p.json_schema() for p in props}}
    req = [p.name for p in props if not p.nullable]
    if req:
        s["required"] = req
    s["additionalProperties"] = False
    return s


@dataclass
class TableDef:
    """A table of a namespace, mutable only through ``bump_schema`` (columns, version)."""

    namespace: str
    name: str
    title: str
    description: str
    version: int
    id_base: int  # ids are id_base + 1, id_base + 2, ... (large bases give ids beyond 2^32)
    default_rows: int
    key: Column
    columns: list[Column] = field(default_factory=list)

    @classmethod
    def from_def(cls, d: dict[str, Any]) -> TableDef:
        return cls(namespace=d["namespace"], name=d["table"], title=d.get("title", ""),
                   description=d.get("description", ""), version=int(d.get("version", 1)),
                   id_base=int(d.get("id_base", 0)), default_rows=int(d.get("default_rows", 100)),
                   key=Column.from_def({**d["key"], "nullable": False}),
                   columns=[Column.from_def(c) for c in d["columns"]])

    def json_schema(self) -> dict[str, Any]:
        """The table's DAP JSON schema (``{"schema": <this>, "version": ...}`` on the wire)."""
        key = object_schema([self.key])
        value = object_schema(self.columns)
        meta = {
            "type": "object",
            "properties": {
                "ts": {"type": "string", "format": "date-time",
                       "description": "Commit time of the record's latest change."},
                "action": {"type": "string", "enum": ["U", "D"],
                           "description": "U: insert or update, D: delete (incremental only)."},
            },
            "required": ["ts"],
            "additionalProperties": False,
        }
        s: dict[str, Any] = {"$schema": JSON_SCHEMA_DRAFT, "type": "object"}
        if self.title:
            s["title"] = self.title
        if self.description:
            s["description"] = self.description
        s["properties"] = {"key": key, "value": value, "meta": meta}
        s["required"] = ["key", "value", "meta"]
        s["additionalProperties"] = False
        return s


def load_definitions() -> dict[str, dict[str, TableDef]]:
    """Read every ``tables/*.json`` shipped with the package: ``{namespace: {table: def}}``."""
    out: dict[str, dict[str, TableDef]] = {}
    folder = resources.files(__package__).joinpath("tables")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            t = TableDef.from_def(json.loads(entry.read_text(encoding="utf-8")))
            out.setdefault(t.namespace, {})[t.name] = t
    return out


_DEFINITIONS: dict[str, dict[str, TableDef]] | None = None


class Catalog:
    """The namespaces and tables one sandbox serves (its own copy: schema bumps are local)."""

    def __init__(self) -> None:
        global _DEFINITIONS
        if _DEFINITIONS is None:
            _DEFINITIONS = load_definitions()
        self._ns = copy.deepcopy(_DEFINITIONS)

    def namespaces(self) -> list[str]:
        return list(self._ns)

    def tables(self, namespace: str) -> list[str]:
        """Table names of a namespace (KeyError if unknown)."""
        return list(self._ns[namespace])

    def get(self, namespace: str, table: str) -> TableDef:
        """The definition (KeyError if the namespace or table is unknown)."""
        return self._ns[namespace][table]

    def bump_schema(self, namespace: str, table: str, added_at: int, column: str | None = None,
                    type_: str = "varchar(255)") -> int:
        """Add a nullable column (a backward-compatible DAP schema change); return the version."""
        t = self.get(namespace, table)
        t.version += 1
        name = column or f"sandbox_added_v{t.version}"
        if any(c.name == name for c in t.columns):
            raise ValueError(f"column {name!r} already exists in {namespace}.{table}")
        col = Column.from_def({"name": name, "type": type_, "nullable": True,
                               "description": f"Column added by schema version {t.version}."})
        col.added_at = added_at
        t.columns.append(col)
        return t.version
