"""Commits, consolidated incrementals, window chaining, schema bumps, reload and retention."""

from __future__ import annotations

import pytest

from tap_canvas_data2.sandbox import Sandbox

from .dapio import Api, decode_rows, strip_meta


def _incremental(api, table, fmt="tsv", mode="condensed", **window):
    schema = api.schema(table)["schema"]
    job = api.job(table, format=fmt, mode=mode, **window)
    assert job["status"] == "complete", job
    return job, decode_rows(fmt, mode, api.download(job), schema, incremental=True)


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_incremental_has_exactly_the_changed_keys(sb, api, fmt):
    snap = api.job("users", format="tsv")
    before = {r["id"] for r in sb.expected_rows("canvas", "users")}
    ts = sb.advance("canvas", "users", inserts=5, updates=7, deletes=3)
    assert ts > snap["at"] and "." in ts
    job, rows = _incremental(api, "users", fmt, since=snap["at"])
    assert job["since"] == snap["at"] and job["until"] == ts
    now = {r["id"]: r for r in sb.expected_rows("canvas", "users")}
    deleted = before - set(now)
    inserted = set(now) - before
    assert len(deleted) == 3 and len(inserted) == 5
    ups = [r for r in rows if r["_action"] == "U"]
    dels = [r for r in rows if r["_action"] == "D"]
    assert {r["id"] for r in dels} == deleted
    assert len(ups) == 12 and inserted <= {r["id"] for r in ups}
    assert all(r["_ts"] == ts for r in rows)
    for r in strip_meta(ups):
        assert r == now[r["id"]]
    for r in dels:
        assert set(r) == {"_ts", "_action", "id"}  # key only
    if fmt == "tsv":  # the header has meta.action right after meta.ts
        blob = api.download(job)[0].decode()
        assert blob.split("\t", 3)[:3] == ["meta.ts", "meta.action", "key.id"]


def test_chained_windows_never_repeat_nor_skip(sb, api):
    at = api.job("courses", format="tsv")["at"]
    t1 = sb.advance("canvas", "courses", updates=4)
    t2 = sb.advance("canvas", "courses", inserts=2, deletes=1)
    t3 = sb.advance("canvas", "courses", updates=3)
    j1, r1 = _incremental(api, "courses", since=at, until=t2)
    assert j1["until"] == t2
    j2, r2 = _incremental(api, "courses", since=j1["until"])
    assert j2["until"] == t3
    assert {r["_ts"] for r in r1} <= {t1, t2} and {r["_ts"] for r in r2} == {t3}
    j3, r3 = _incremental(api, "courses", since=j2["until"])
    assert r3 == [] and j3["until"] == t3  # nothing new: empty, and chains at the same point
    # the windows together equal one big window, consolidated
    _, whole = _incremental(api, "courses", since=at)
    latest = {}
    for r in r1 + r2:
        latest[r["id"]] = r
    assert sorted(latest) == sorted(r["id"] for r in whole)


def test_until_in_the_past_gives_the_state_at_until(sb, api):
    at = api.job("accounts", format="jsonl")["at"]
    t1 = sb.advance("canvas", "accounts", update_ids=[3])
    sb.advance("canvas", "accounts", delete_ids=[3])
    _, rows = _incremental(api, "accounts", "jsonl", since=at, until=t1)
    assert [(r["id"], r["_action"]) for r in rows] == [(3, "U")]
    _, rows = _incremental(api, "accounts", "jsonl", since=at)
    assert [(r["id"], r["_action"]) for r in rows] == [(3, "D")]


def test_insert_and_delete_in_one_window_is_a_delete(sb, api):
    at = api.job("enrollment_terms", format="tsv")["at"]
    sb.advance("canvas", "enrollment_terms", inserts=1)
    new_id = max(r["id"] for r in sb.expected_rows("canvas", "enrollment_terms"))
    sb.advance("canvas", "enrollment_terms", delete_ids=[new_id])
    _, rows = _incremental(api, "enrollment_terms", since=at)
    assert [(r["id"], r["_action"]) for r in rows] == [(new_id, "D")]


def test_snapshot_after_changes_matches_expected_and_meta_ts(sb, api):
    sb.advance("canvas", "pseudonyms", inserts=3, updates=3, deletes=3)
    last = sb.advance("canvas", "pseudonyms", updates=2)
    schema = api.schema("pseudonyms")["schema"]
    job = api.job("pseudonyms", format="tsv")
    assert job["at"] == last
    rows = decode_rows("tsv", "condensed", api.download(job), schema, False)
    assert strip_meta(rows) == list(sb.expected_rows("canvas", "pseudonyms"))
    assert sum(r["_ts"] == last for r in rows) == 2
    assert len({r["_ts"] for r in rows}) == 3  # initial commit, first advance, last advance


def test_schema_bump_adds_a_nullable_column_and_bumps_version(sb, api):
    v0 = api.schema("users")["version"]
    at = api.job("users", format="tsv")["at"]
    v1 = sb.bump_schema("canvas", "users")
    body = api.schema("users")
    assert body["version"] == v1 == v0 + 1
    value = body["schema"]["properties"]["value"]
    added = list(value["properties"])[-1]
    assert added not in value.get("required", [])
    # old rows carry NULL in the new column; rows written afterwards have values
    assert all(r[added] is None for r in sb.expected_rows("canvas", "users"))
    sb.advance("canvas", "users", updates=40)
    job, rows = _incremental(api, "users", since=at)
    assert job["schema_version"] == v1
    assert any(r.get(added) is not None for r in rows)
    assert strip_meta([r for r in rows if r["_action"] == "U"]) == \
        [r for r in sb.expected_rows("canvas", "users") if r["id"] in {x["id"] for x in rows}]


def test_reload_requires_a_snapshot(sb, api):
    at = api.job("courses", format="tsv")["at"]
    sb.reload("canvas", "courses")
    r = api.post("/dap/query/canvas/table/courses/data", {"format": "tsv", "since": at})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "SnapshotRequiredError" and err["since"] and err["until"]
    at2 = api.job("courses", format="tsv")["at"]
    assert at2 > at
    assert api.job("courses", format="tsv", since=at2)["status"] == "complete"


def test_retention_horizon_gives_out_of_range(sb, api):
    at = api.job("courses", format="tsv")["at"]
    sb.advance("canvas", "courses", updates=1)
    horizon = sb.expire_history("canvas", "courses")
    r = api.post("/dap/query/canvas/table/courses/data", {"format": "tsv", "since": at})
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == "OutOfRangeError"
    assert err["since"] == horizon and "until" in err
    assert api.job("courses", format="tsv", since=horizon)["status"] == "complete"


def test_retention_setting_on_the_data_clock():
    with Sandbox(retention=120) as sb:
        api = Api(sb)
        at = api.job("accounts", format="tsv")["at"]
        for _ in range(3):  # 3 commits of ~60 s: the initial one falls out of 120 s
            sb.advance("canvas", "accounts", updates=1)
        r = api.post("/dap/query/canvas/table/accounts/data", {"format": "tsv", "since": at})
        assert r.json()["error"]["type"] == "OutOfRangeError"


def test_job_polls_and_expires_at():
    with Sandbox(job_polls=2, job_ttl=3600) as sb:
        api = Api(sb)
        r = api.post("/dap/query/canvas/table/accounts/data", {"format": "tsv"}).json()
        assert r["status"] == "waiting" and set(r) == {"id", "status", "expires_at"}
        r2 = api.get(f"/dap/job/{r['id']}").json()
        assert r2["status"] == "running"
        r3 = api.get(f"/dap/job/{r['id']}").json()
        assert r3["status"] == "complete"


def test_rate_limit_of_job_creation():
    with Sandbox(rate_limit=(2, 60)) as sb:
        api = Api(sb)
        for _ in range(2):
            assert api.post("/dap/query/canvas/table/accounts/data",
                            {"format": "tsv"}).status_code == 200
        r = api.post("/dap/query/canvas/table/accounts/data", {"format": "tsv"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
