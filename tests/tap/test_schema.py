"""DAP JSON schema -> Singer schema (pure functions)."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from tap_canvas_data2 import schema as S

DAP = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "title": "Accounts",
    "description": "All accounts.",
    "properties": {
        "key": {
            "type": "object",
            "properties": {"id": {"type": "integer", "format": "int64", "title": "The id"}},
            "required": ["id"],
            "additionalProperties": False,
        },
        "value": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 255, "description": "Name"},
                "workflow_state": {
                    "type": "string",
                    "enum": ["__dap_unspecified__", "active", "deleted"],
                },
                "state_opt": {"type": "string", "enum": ["__dap_unspecified__", "a", "b"]},
                "created_at": {"type": "string", "format": "date-time"},
                "score": {"type": "number", "format": "float64"},
                "price": {
                    "type": "number",
                    "multipleOf": 0.01,
                    "exclusiveMinimum": -1000,
                    "exclusiveMaximum": 1000,
                },
                "flag": {"type": "boolean", "default": False},
                "ip": {
                    "oneOf": [
                        {"type": "string", "format": "ipv4"},
                        {"type": "string", "format": "ipv6"},
                    ]
                },
                "settings": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                    "required": ["a"],
                    "additionalProperties": False,
                },
                "submission_types": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["__dap_unspecified__", "x", "y"]},
                },
            },
            "required": ["workflow_state", "created_at", "submission_types"],
            "additionalProperties": False,
        },
        "meta": {
            "type": "object",
            "properties": {"ts": {"type": "string", "format": "date-time"}},
            "required": ["ts"],
        },
    },
    "required": ["key", "meta"],
}


@pytest.fixture
def singer():
    return S.to_singer_schema(DAP, namespace="canvas", table="accounts", schema_version=3)


def test_names():
    assert S.stream_name("canvas", "accounts") == "canvas-accounts"
    assert S.split_stream_name("canvas_logs-web_logs") == ("canvas_logs", "web_logs")
    with pytest.raises(ValueError):
        S.split_stream_name("accounts")
    assert S.columns(DAP)[:3] == ["id", "name", "workflow_state"]


def test_order_and_required(singer):
    assert list(singer["properties"]) == [
        "id", "name", "workflow_state", "state_opt", "created_at", "score", "price", "flag",
        "ip", "settings", "submission_types", "_sdc_deleted_at",
    ]
    assert singer["required"] == ["id"]
    assert singer["type"] == "object"


def test_nullability_and_keywords(singer):
    p = singer["properties"]
    assert p["id"] == {"type": "integer", "format": "int64", "title": "The id"}
    assert p["name"] == {"type": ["string", "null"], "maxLength": 255, "description": "Name"}
    assert p["workflow_state"] == {
        "type": "string", "enum": ["__dap_unspecified__", "active", "deleted"]}
    assert p["state_opt"]["type"] == ["string", "null"]
    assert p["state_opt"]["enum"][-1] is None
    assert p["created_at"] == {"type": "string", "format": "date-time"}
    assert p["score"] == {"type": ["number", "null"], "format": "float64"}
    assert p["price"]["multipleOf"] == 0.01
    assert p["price"]["exclusiveMinimum"] == -1000 and p["price"]["exclusiveMaximum"] == 1000
    assert p["flag"] == {"type": ["boolean", "null"], "default": False}
    assert p["ip"]["type"] == ["string", "null"]
    assert {"type": "null"} in p["ip"]["oneOf"]
    assert p["settings"]["type"] == ["object", "null"]
    assert p["settings"]["properties"] == DAP["properties"]["value"]["properties"]["settings"][
        "properties"]
    assert p["settings"]["additionalProperties"] is False
    assert p["submission_types"] == DAP["properties"]["value"]["properties"]["submission_types"]
    assert p["_sdc_deleted_at"] == {"type": ["string", "null"], "format": "date-time"}


def test_x_dap(singer):
    x = singer["x-dap"]
    assert x["namespace"] == "canvas" and x["table"] == "accounts" and x["schema_version"] == 3
    expected = copy.deepcopy(DAP)
    del expected["properties"]["meta"]  # dap pops the property but keeps "required" as it is
    assert x["schema"] == expected
    assert x["schema"]["required"] == ["key", "meta"]
    assert "meta" in DAP["properties"]  # input not mutated
    assert S.schema_version_of(singer) == 3


def test_records_validate(singer):
    v = jsonschema.Draft7Validator(singer, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    v.check_schema(singer)
    full = {
        "id": 1, "name": None, "workflow_state": "active", "state_opt": None,
        "created_at": "2024-01-01T00:00:00Z", "score": None, "price": 1.5, "flag": None,
        "ip": None, "settings": None, "submission_types": ["x"], "_sdc_deleted_at": None,
    }
    assert not list(v.iter_errors(full))
    assert not list(v.iter_errors({**full, "ip": "10.0.0.1", "settings": {"a": 1}}))
    assert not list(v.iter_errors({"id": 5, "_sdc_deleted_at": "2024-01-01T00:00:00Z"}))
    assert list(v.iter_errors({**full, "workflow_state": None}))
    assert list(v.iter_errors({"name": "x"}))  # key missing


def test_select_columns(singer):
    sel = S.select_columns(singer, ["name", "id", "_sdc_deleted_at", "settings"])
    assert "name" not in sel["properties"] and "settings" not in sel["properties"]
    assert "id" in sel["properties"] and "_sdc_deleted_at" in sel["properties"]
    assert "name" in singer["properties"]  # input not mutated
    assert S.select_columns(singer, []) is singer
