"""A synthetic 46-column DAP table (schema + TSV writer) for parser tests and the benchmark."""

from __future__ import annotations

import json
import random

_NULL = "\\N"


def wide_schema() -> dict:
    """A DAP-shaped schema with 46 columns (1 key + 45 values) of every kind."""
    value: dict[str, dict] = {}
    for i in range(12):
        value[f"int_{i}"] = {"type": "integer", "format": "int64"}
    for i in range(10):
        value[f"str_{i}"] = {"type": "string", "maxLength": 255}
    for i in range(8):
        value[f"ts_{i}"] = {"type": "string", "format": "date-time"}
    for i in range(4):
        value[f"bool_{i}"] = {"type": "boolean"}
    for i in range(4):
        value[f"num_{i}"] = {"type": "number", "format": "float64"}
    value["workflow_state"] = {"type": "string", "enum": ["__dap_unspecified__", "active",
                                                          "deleted"]}
    value["settings"] = {"type": "object", "additionalProperties": False,
                         "properties": {"theme": {"type": "string"},
                                        "size": {"type": "integer"}}}
    value["meta_json"] = {"type": "object", "additionalProperties": False,
                          "properties": {"a": {"type": "boolean"}}}
    value["tags"] = {"type": "array", "items": {"type": "string"}}
    value["uuid"] = {"type": "string", "format": "uuid"}
    value["body"] = {"type": "string"}
    value["score"] = {"type": "number"}
    assert len(value) == 45
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "key": {"type": "object", "additionalProperties": False,
                    "properties": {"id": {"type": "integer", "format": "int64"}},
                    "required": ["id"]},
            "value": {"type": "object", "additionalProperties": False,
                      "properties": value, "required": ["workflow_state"]},
            "meta": {"type": "object", "properties": {"ts": {"type": "string",
                                                                "format": "date-time"}}},
        },
    }


def _esc(s: str) -> str:
    return (s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
            .replace("\r", "\\r"))


def wide_rows(n: int, seed: int = 1, null_rate: float = 0.1, incremental: bool = False,
              escape_every: int = 11):
    """Yield (action, ts, row) with JSON-native values for the wide schema."""
    rnd = random.Random(seed)
    schema = wide_schema()
    vprops = schema["properties"]["value"]["properties"]
    for k in range(n):
        row = {"id": k + 1}
        for name, prop in vprops.items():
            if name != "workflow_state" and rnd.random() < null_rate:
                row[name] = None
                continue
            t = prop["type"]
            if t == "integer":
                row[name] = rnd.randint(-(2**40), 2**40)
            elif t == "number":
                row[name] = rnd.random() * 1000
            elif t == "boolean":
                row[name] = rnd.random() < 0.5
            elif t == "object":
                if name == "settings":
                    theme = "dark\ttab \"q\"" if k % (escape_every * 3) == 0 else "light"
                    row[name] = {"theme": theme, "size": k}
                else:
                    row[name] = {"a": True}
            elif t == "array":
                row[name] = ["x", "y\nz"] if k % (escape_every * 2) == 0 else ["a"]
            elif prop.get("format") == "date-time":
                row[name] = f"2024-0{1 + k % 9}-1{k % 10}T0{k % 10}:12:34.{k % 1000000:06d}Z"
            elif name == "workflow_state":
                row[name] = "active"
            elif name == "uuid":
                row[name] = f"3f2a9c1e-0000-4000-8000-{k:012d}"
            else:
                row[name] = (f"text {k} line\nwith\ttab and \\ backslash" if k % escape_every == 0
                             else f"value number {k} of column {name}")
        action = "D" if incremental and k % 10 == 3 else "U"
        yield action, f"2024-05-01T00:00:{k % 60:02d}.{k % 1000:03d}Z", row


def to_tsv(records, *, incremental: bool = False) -> bytes:
    """Encode records as a DAP condensed TSV object (decompressed)."""
    schema = wide_schema()
    vnames = list(schema["properties"]["value"]["properties"])
    header = ["meta.ts"] + (["meta.action"] if incremental else []) + ["key.id"] + [
        f"value.{n}" for n in vnames]
    out = ["\t".join(header)]
    for action, ts, row in records:
        fields = [ts] + ([action] if incremental else []) + [str(row["id"])]
        for n in vnames:
            v = None if action == "D" else row[n]
            if v is None:
                fields.append(_NULL)
            elif isinstance(v, bool):
                fields.append("true" if v else "false")
            elif isinstance(v, (dict, list)):
                fields.append(_esc(json.dumps(v, separators=(",", ":"))))
            elif isinstance(v, float):
                fields.append(repr(v))
            else:
                fields.append(_esc(str(v)))
        out.append("\t".join(fields))
    return ("\n".join(out) + "\n").encode()
