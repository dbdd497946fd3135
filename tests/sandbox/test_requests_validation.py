"""Validation of query bodies: the error shapes the official client deserializes."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("body, near", [
    ({"format": "parquet"}, "parquet"),
    ({"format": "xml"}, "format"),
    ({"format": "tsv", "mode": "flat"}, "mode"),
    ({"format": "tsv", "since": "2025-01-01T00:00:00"}, "zone"),
    ({"format": "tsv", "since": "yesterday"}, "since"),
    ({"format": "tsv", "until": "2025-01-01T00:00:00Z"}, "until"),
    ({"format": "tsv", "since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
    ({"format": "tsv", "colour": "red"}, "colour"),
])
def test_bad_query_bodies_are_validation_errors(shared_api, body, near):
    r = shared_api.post("/dap/query/canvas/table/users/data", body)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/json"
    err = r.json()["error"]
    assert err["type"] == "ValidationError"
    assert set(err["location"]) == {"line", "column", "character"}
    assert near in err["message"]
    if near == "parquet":
        assert "not supported by the sandbox" in err["message"]


def test_invalid_json_location_points_at_the_error(shared_api):
    r = shared_api.http.post(f"{shared_api.url}/dap/query/canvas/table/users/data",
                             headers=shared_api.headers(), data='{"format":\n  tsv}')
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == "ValidationError"
    assert err["location"]["line"] == 2 and err["location"]["column"] == 3


def test_unknown_job_and_object(shared_api):
    r = shared_api.get("/dap/job/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and r.json()["error"]["kind"] == "job"
    r = shared_api.post("/dap/object/url", [{"id": "nope/part-00000.tsv.gz"}])
    assert r.status_code == 404 and r.json()["error"]["kind"] == "object"


def test_snapshot_job_shape(shared_api):
    job = shared_api.job("users", format="tsv", mode="condensed")
    assert set(job) == {"id", "status", "expires_at", "objects", "schema_version", "at"}
    assert job["status"] == "complete" and job["at"].endswith("Z")
    assert all(set(o) == {"id"} for o in job["objects"])
    urls = shared_api.urls(job)
    assert all(u.split("?")[0].endswith(".tsv.gz") for u in urls)
    inc = shared_api.job("users", format="jsonl", since=job["at"])
    assert set(inc) == {"id", "status", "expires_at", "objects", "schema_version", "since",
                        "until"}
    assert all(u.split("?")[0].endswith(".jsonl.gz") for u in shared_api.urls(inc))
