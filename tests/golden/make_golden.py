"""Regenerate the golden Singer message files: python tests/golden/make_golden.py

Each file is small and hand-readable (one message per line); the files are committed, this
script only documents how they were made.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

HERE = Path(__file__).parent
STREAM = "canvas-accounts"

PROPS_V1 = {
    "id": {"type": "integer", "format": "int64", "title": "Account ID."},
    "name": {"type": ["string", "null"], "maxLength": 255, "description": "Account name."},
    "workflow_state": {"type": "string", "enum": ["__dap_unspecified__", "active", "deleted"],
                       "description": "Workflow state.\nSecond line of the description."},
    "created_at": {"type": "string", "format": "date-time"},
    "uuid": {"type": ["string", "null"], "format": "uuid"},
    "i32": {"type": ["integer", "null"], "format": "int32"},
    "score": {"type": ["number", "null"], "format": "float64"},
    "ratio": {"type": ["number", "null"], "format": "float32"},
    "price": {"type": ["number", "null"], "multipleOf": 0.01,
              "exclusiveMinimum": -1000, "exclusiveMaximum": 1000},
    "is_public": {"type": "boolean"},
    "settings": {"type": ["object", "null"], "additionalProperties": False,
                 "properties": {"a": {"type": ["string", "null"]},
                                "n": {"type": ["integer", "null"], "format": "int64"}}},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    "kinds": {"type": ["array", "null"],
              "items": {"type": "string", "enum": ["__dap_unspecified__", "x", "y"]}},
    "born_on": {"type": ["string", "null"], "format": "date"},
    "notes": {"type": ["string", "null"]},
    "is_test": {"type": "boolean", "default": False},
}


def dap_schema(props: dict) -> dict:
    """The DAP schema (key/value, minus meta) matching Singer properties."""
    value = {k: copy.deepcopy(v) for k, v in props.items() if k != "id"}
    required = []
    for name, prop in value.items():
        t = prop.get("type")
        if isinstance(t, list):
            prop["type"] = [x for x in t if x != "null"][0]
        else:
            required.append(name)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Accounts",
            "description": "Accounts of the institution.\nOne row per account.",
            "type": "object", "properties": {
                "key": {"type": "object", "properties": {"id": props["id"]},
                        "required": ["id"], "additionalProperties": False},
                "value": {"type": "object", "properties": value, "required": required,
                          "additionalProperties": False}},
            "required": ["key"], "additionalProperties": False}


def schema_msg(props: dict, version: int, stream: str = STREAM) -> dict:
    ns, table = stream.split("-", 1)
    singer = dict(props)
    singer["_sdc_deleted_at"] = {"type": ["string", "null"], "format": "date-time"}
    return {"type": "SCHEMA", "stream": stream, "key_properties": ["id"],
            "schema": {"type": "object", "properties": singer, "required": ["id"],
                       "x-dap": {"namespace": ns, "table": table, "schema_version": version,
                                 "schema": dap_schema(props)}}}


def row(i: int, **over) -> dict:
    base = {"id": i, "name": f"Account {i}", "workflow_state": "active",
            "created_at": f"2024-01-0{i % 9 + 1}T10:00:0{i % 10}Z", "uuid": None, "i32": i * 10,
            "score": i + 0.5, "ratio": 0.25, "price": 12.5, "is_public": i % 2 == 0,
            "settings": None, "tags": None, "kinds": None, "born_on": None, "notes": None,
            "is_test": False}
    base.update(over)
    return base


def rec(r: dict, version: int | None = None, stream: str = STREAM) -> dict:
    m = {"type": "RECORD", "stream": stream, "record": r}
    if version is not None:
        m["version"] = version
    return m


def delete(i: int, ts: str = "2024-02-01T00:00:00Z") -> dict:
    return {"type": "RECORD", "stream": STREAM, "record": {"id": i, "_sdc_deleted_at": ts}}


def state(ts: str, version: int = 1) -> dict:
    return {"type": "STATE", "value": {"bookmarks": {STREAM: {"timestamp": ts,
                                                              "schema_version": version}}}}


def write(name: str, messages: list) -> None:
    with open(HERE / f"{name}.jsonl", "w", encoding="utf-8") as fh:
        for m in messages:
            fh.write(m if isinstance(m, str) else json.dumps(m, ensure_ascii=False))
            fh.write("\n")


def main() -> None:
    s1 = schema_msg(PROPS_V1, 1)
    write("snapshot_upsert", [
        s1,
        rec(row(1, uuid="6f1c1d4e-1111-2222-3333-444455556666", settings={"a": "x", "n": 1},
                tags=["t1", "t2"], kinds=["x"], born_on="1990-05-06"), 1),
        rec(row(2), 1), rec(row(3), 1),
        rec(row(4, name="first version"), 1),
        rec(row(4, name="second version wins"), 1),
        {"type": "ACTIVATE_VERSION", "stream": STREAM, "version": 1},
        state("2024-01-10T00:00:00.123456Z"),
    ])
    write("incremental_update_delete", [
        s1,
        rec(row(2, name="updated", workflow_state="deleted", i32=None)),
        delete(3),
        rec(row(5, notes="inserted")),
        rec(row(6)), delete(6),
        delete(99),
        state("2024-01-11T00:00:00Z"),
    ])
    props2 = {k: copy.deepcopy(v) for k, v in PROPS_V1.items() if k != "ratio"}
    props2["workflow_state"]["enum"].append("suspended")
    props2["i32"] = {"type": ["integer", "null"], "format": "int64"}
    props2["name"] = {"type": ["string", "null"], "description": "Account name (any length)."}
    props2["is_public"] = {"type": ["boolean", "null"]}
    props2 = dict(list(props2.items())[:-1] + [("nickname", {"type": ["string", "null"],
                                                              "maxLength": 64,
                                                              "title": "Nickname."}),
                                               ("is_test", props2["is_test"])])
    s2 = schema_msg(props2, 2)
    r7 = row(7, workflow_state="suspended", i32=5_000_000_000, is_public=None, name="x" * 300)
    del r7["ratio"]
    r7["nickname"] = "seven"
    write("schema_change", [s2, rec(r7), state("2024-01-12T00:00:00Z", 2)])
    write("replacement_snapshot", [
        s1,
        rec(row(1), 2), rec(row(2, name="replaced"), 2), rec(row(8), 2),
        {"type": "ACTIVATE_VERSION", "stream": STREAM, "version": 2},
        state("2024-01-13T00:00:00Z"),
    ])
    hard = [
        rec(row(11, name="tab\there", notes="line1\nline2\r\nline3 \\ backslash \\N \\t")),
        rec(row(12, name="\\N", notes="NULL")),
        rec(row(13, name="null", notes="")),
        rec(row(14, name='quotes "double" and \'single\'', notes="emoji 😀 ünïcödé 中文")),
        rec(row(15, i32=2_000_000_000, score=1e-7, price=-999.99,
                created_at="2024-03-04T05:06:07.123456Z", settings={"a": "q\"u\\o\nte", "n": 2**40},
                tags=["a,b", "c\"d", "e\\f", "NULL", "", "{x}"], kinds=["x", "y"],
                notes="\u0001 control \u001f chars")),
        rec(row(16, settings={"a": None, "n": 5_000_000_000}, tags=[], notes="a\\\\b",
                created_at="2024-03-04T05:06:07.5Z")),
    ]
    s_big = copy.deepcopy(PROPS_V1)
    write("hard_values", [s1, *hard,
                          rec({"id": 17, "name": None, "workflow_state": "active",
                               "created_at": "2024-01-01T00:00:00Z", "uuid": None, "i32": None,
                               "score": None, "ratio": None, "price": None, "is_public": True,
                               "settings": None, "tags": None, "kinds": None, "born_on": None,
                               "notes": None, "is_test": True}),
                          state("2024-01-14T00:00:00Z")])
    del s_big
    good = rec(row(1))
    write("bad_too_long", [s1, good, rec(row(2, name="y" * 256)), state("2024-01-15T00:00:00Z")])
    write("bad_int_range", [s1, good, rec(row(2, i32=3_000_000_000)),
                            state("2024-01-15T00:00:00Z")])
    write("bad_enum", [s1, good, rec(row(2, workflow_state="bogus")),
                       state("2024-01-15T00:00:00Z")])
    write("bad_nul", [s1, good, rec(row(2, notes="nul\u0000byte")),
                      state("2024-01-15T00:00:00Z")])
    nan_line = json.dumps(rec(row(2, score=float("nan"))))
    write("bad_nan", [s1, good, nan_line, state("2024-01-15T00:00:00Z")])
    write("malformed_json", [s1, good, '{"type": "RECORD", "stream": "canvas-accounts", "rec',
                             state("2024-01-15T00:00:00Z")])
    write("malformed_record_before_schema", [good, s1])
    no_key = copy.deepcopy(s1)
    no_key["key_properties"] = []
    write("malformed_no_key_properties", [no_key, good])
    write("malformed_unknown_type", [s1, good, {"type": "BOGUS", "stream": STREAM}])


if __name__ == "__main__":
    main()
