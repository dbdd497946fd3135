"""Login, bearer tokens, table list and schema shapes, over real HTTP."""

from __future__ import annotations

import base64
import json

import requests

from tap_canvas_data2.sandbox import Sandbox

#: Keywords the official client's schema reader accepts (strong_typing JsonSchema* classes).
ALLOWED = {"$schema", "type", "format", "title", "description", "properties", "required",
           "additionalProperties", "items", "enum", "maxLength", "minLength", "default",
           "multipleOf", "exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum",
           "const", "examples"}


def _walk(node, visit):
    visit(node)
    for p in (node.get("properties") or {}).values():
        _walk(p, visit)
    if "items" in node:
        _walk(node["items"], visit)


def test_login_returns_a_jwt_with_exp(shared_sb):
    r = requests.post(f"{shared_sb.url}/ids/auth/login", data={"grant_type": "client_credentials"},
                      auth=(shared_sb.client_id, shared_sb.client_secret))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    head, payload, sig = body["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == 3600 and claims["sub"] == shared_sb.client_id


def test_bad_credentials_and_bad_tokens_are_401_with_exactly_three_fields(shared_sb):
    r = requests.post(f"{shared_sb.url}/ids/auth/login", data={"grant_type": "client_credentials"},
                      auth=(shared_sb.client_id, "wrong"))
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"type", "uuid", "message"}
    for auth in (None, "Bearer nonsense", "Bearer a.b.c", "Basic eDp5"):
        h = {"Authorization": auth} if auth else {}
        r = requests.get(f"{shared_sb.url}/dap/query/canvas/table", headers=h)
        assert r.status_code == 401, auth
        assert r.headers["Content-Type"] == "application/json"
        assert set(r.json()["error"]) == {"type", "uuid", "message"}


def test_custom_credentials():
    with Sandbox(client_id="eu-west-1#abc", client_secret="s3cr3t") as sb:
        r = requests.post(f"{sb.url}/ids/auth/login", data={"grant_type": "client_credentials"},
                          auth=("eu-west-1#abc", "s3cr3t"))
        assert r.status_code == 200


def test_table_list_and_namespaces(shared_api, shared_sb):
    r = shared_api.get("/dap/query/canvas/table")
    assert r.headers["Content-Type"] == "application/json"
    tables = r.json()["tables"]
    for t in ("accounts", "users", "courses", "course_sections", "enrollments", "assignments",
              "submissions", "pseudonyms", "discussion_topics", "enrollment_terms"):
        assert t in tables
    assert set(r.json()) == {"tables"}
    assert shared_sb.tables("canvas") == tables
    edge = shared_api.get("/dap/query/edge_cases/table").json()["tables"]
    assert len(edge) == 1 and ";" in edge[0] and '"' in edge[0] and " " in edge[0]
    r = shared_api.get("/dap/query/nope/table")
    assert r.status_code == 404 and r.json()["error"]["kind"] == "namespace"


def test_schemas_use_only_keywords_the_official_client_reads(shared_api, shared_sb):
    kinds = set()
    for ns in ("canvas", "edge_cases"):
        for t in shared_sb.tables(ns):
            body = shared_api.schema(t, ns)
            assert set(body) == {"schema", "version"} and isinstance(body["version"], int)
            s = body["schema"]
            assert s["$schema"].startswith("http://json-schema.org/")
            assert s["required"] == ["key", "value", "meta"]
            assert set(s["properties"]) == {"key", "value", "meta"}
            key = s["properties"]["key"]
            assert key["required"] == list(key["properties"])
            value = s["properties"]["value"]
            for name in value.get("required", []):
                assert name in value["properties"]

            action = s["properties"]["meta"]["properties"]["action"]

            def visit(node, action=action):
                assert set(node) <= ALLOWED, set(node) - ALLOWED
                if node.get("type") == "object":
                    assert node["additionalProperties"] is False and node["properties"]
                if "enum" in node and node is not action:
                    assert node["enum"][0] == "__dap_unspecified__" and len(node["enum"]) >= 2
                kinds.add((node.get("type"), node.get("format"), "maxLength" in node,
                           "enum" in node, "multipleOf" in node))

            _walk(s, visit)
    assert ("integer", "int64", False, False, False) in kinds
    assert ("integer", "int32", False, False, False) in kinds
    assert ("string", None, True, False, False) in kinds  # varchar(n)
    assert ("string", None, False, False, False) in kinds  # text
    assert ("string", None, False, True, False) in kinds  # enum
    assert ("string", "date-time", False, False, False) in kinds
    assert ("number", "float64", False, False, False) in kinds
    assert ("number", None, False, False, True) in kinds  # decimal
    assert ("boolean", None, False, False, False) in kinds
    assert ("array", None, False, False, False) in kinds
    assert ("object", None, False, False, False) in kinds


def test_decimal_array_and_nested_object_shapes(shared_api):
    sub = shared_api.schema("submissions")["schema"]["properties"]["value"]["properties"]
    assert sub["points_deducted"]["multipleOf"] == 0.01
    assert sub["points_deducted"]["exclusiveMaximum"] == 10000
    assert sub["points_deducted"]["exclusiveMinimum"] == -10000
    a = shared_api.schema("assignments")["schema"]["properties"]["value"]
    st = a["properties"]["submission_types"]
    assert st["type"] == "array" and st["items"]["enum"][0] == "__dap_unspecified__"
    assert "submission_types" in a["required"]
    c = shared_api.schema("courses")["schema"]["properties"]["value"]["properties"]["settings"]
    assert c["type"] == "object" and c["additionalProperties"] is False
    assert "course_format" in c["properties"]


def test_unknown_table_is_404_not_found_with_id_and_kind(shared_api):
    for path, method in (("/dap/query/canvas/table/nope/schema", "get"),
                         ("/dap/query/canvas/table/nope/data", "post")):
        r = shared_api.get(path) if method == "get" else shared_api.post(path, {"format": "tsv"})
        assert r.status_code == 404
        err = r.json()["error"]
        assert err["type"] == "NotFoundError" and err["id"] == "nope" and err["kind"] == "table"


def test_discovery_creates_no_job():
    with Sandbox() as sb:
        from .dapio import Api
        api = Api(sb)
        for t in sb.tables("canvas"):
            api.schema(t)
        st = sb.stats()
        assert st["jobs_created"] == 0
        assert st["requests"]["get_schema"] == len(sb.tables("canvas"))
        assert st["requests"]["login"] == 1
