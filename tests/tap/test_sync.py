"""The tap against the sandbox, as a real subprocess: snapshot, incremental, recovery, state."""

from __future__ import annotations

import datetime
import json

import pytest

from tests.tap.helpers import (
    Replica,
    expected,
    final_state,
    messages,
    run_tap,
    tap_config,
)

NS = "canvas"


def _ts(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _by_type(msgs, typ, stream=None):
    return [m for m in msgs if m["type"] == typ and (stream is None or m.get("stream") == stream)]


def _check_order(msgs: list[dict]) -> None:
    """A stream's bookmark changes only in a STATE after all its records (and after its
    ACTIVATE_VERSION when it has one); records of a snapshot carry the activated version."""
    first = next((m for m in msgs if m["type"] == "STATE"), None)
    last = dict((first or {}).get("value", {}).get("bookmarks", {})) if (
        first is msgs[0]) else {}
    done: set[str] = set()
    for m in msgs:
        if m["type"] == "STATE":
            bms = m["value"].get("bookmarks", {})
            for name, bm in bms.items():
                if last.get(name) != bm:
                    done.add(name)
            assert set(last) <= set(bms), "state is cumulative"
            last = dict(bms)
        elif m["type"] in ("RECORD", "ACTIVATE_VERSION"):
            assert m["stream"] not in done, f"{m['type']} of {m['stream']} after its bookmark"
    for av in _by_type(msgs, "ACTIVATE_VERSION"):
        recs = _by_type(msgs, "RECORD", av["stream"])
        assert all(r.get("version") == av["version"] for r in recs)


def _assert_replica(sb, replica: Replica, tables: list[str]) -> None:
    for table in tables:
        exp = expected(sb, NS, table, ["id"])
        got = replica.rows(f"{NS}-{table}")
        assert len(got) == len(exp), table
        assert got == exp, table


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "csv"])
def test_snapshot_then_incremental_matches_expected(sandbox, tmp_path, fmt):
    sb = sandbox
    tables = sb.tables(NS)
    cfg = tap_config(sb, format=fmt)

    run1 = messages(run_tap(tmp_path, cfg).stdout)
    _check_order(run1)
    replica = Replica()
    replica.apply(run1)
    _assert_replica(sb, replica, tables)
    state1 = final_state(run1)
    for table in tables:
        name = f"{NS}-{table}"
        bm = state1["bookmarks"][name]
        assert _ts(bm["timestamp"]) == _ts(sb.latest(NS, table))  # the snapshot's `at`
        assert bm["schema_version"] == sb.schema(NS, table)["version"]
        assert len(_by_type(run1, "ACTIVATE_VERSION", name)) == 1
        assert all("version" in r for r in _by_type(run1, "RECORD", name))

    commits = {}
    for i, table in enumerate(tables):
        commits[table] = sb.advance(NS, table, inserts=3 + i, updates=4, deletes=2)

    run2 = messages(run_tap(tmp_path, cfg, state=state1).stdout)
    _check_order(run2)
    assert not _by_type(run2, "ACTIVATE_VERSION")
    recs = _by_type(run2, "RECORD")
    assert recs and all("version" not in r for r in recs)
    deletes = [r for r in recs if r["record"].get("_sdc_deleted_at")]
    assert deletes
    for d in deletes:
        assert set(d["record"]) == {"id", "_sdc_deleted_at"}
    replica.apply(run2)
    _assert_replica(sb, replica, tables)
    state2 = final_state(run2)
    for table in tables:
        assert _ts(state2["bookmarks"][f"{NS}-{table}"]["timestamp"]) == _ts(commits[table])

    # nothing new: an incremental run emits no records and keeps the bookmarks
    run3 = messages(run_tap(tmp_path, cfg, state=state2).stdout)
    assert not _by_type(run3, "RECORD")
    assert final_state(run3) == state2


def test_schema_bump_emits_new_schema(sandbox, tmp_path):
    sb = sandbox
    cfg = tap_config(sb, tables=["users"])
    run1 = messages(run_tap(tmp_path, cfg).stdout)
    replica = Replica()
    replica.apply(run1)
    old = _by_type(run1, "SCHEMA", "canvas-users")[0]["schema"]

    sb.bump_schema(NS, "users")
    sb.advance(NS, "users", inserts=2, updates=3, deletes=1)
    new_version = sb.schema(NS, "users")["version"]
    run2 = messages(run_tap(tmp_path, cfg, state=final_state(run1)).stdout)
    schema = _by_type(run2, "SCHEMA", "canvas-users")[0]["schema"]
    added = set(schema["properties"]) - set(old["properties"])
    assert len(added) == 1
    assert schema["x-dap"]["schema_version"] == new_version != old["x-dap"]["schema_version"]
    (col,) = added
    assert col in schema["x-dap"]["schema"]["properties"]["value"]["properties"]
    ups = [r["record"] for r in _by_type(run2, "RECORD") if not r["record"].get("_sdc_deleted_at")]
    assert ups and all(col in r for r in ups)
    assert final_state(run2)["bookmarks"]["canvas-users"]["schema_version"] == new_version
    replica.apply(run2)
    # rows not touched since the bump lack the new column in the replica (no backfill);
    # compare the changed rows and the key set
    exp = expected(sb, NS, "users", ["id"])
    got = replica.rows("canvas-users")
    assert set(got) == set(exp)
    for r in ups:
        assert got[(r["id"],)] == exp[(r["id"],)]


@pytest.mark.parametrize("how", ["reload", "out_of_range"])
def test_snapshot_required_recovery(sandbox, tmp_path, how):
    sb = sandbox
    cfg = tap_config(sb, tables=["users", "accounts"])
    run1 = messages(run_tap(tmp_path, cfg).stdout)
    replica = Replica()
    replica.apply(run1)
    sb.advance(NS, "users", inserts=2, updates=2, deletes=2)
    sb.advance(NS, "accounts", inserts=1, updates=1, deletes=1)
    if how == "reload":
        sb.reload(NS, "users")
    else:
        sb.inject("out_of_range", path="/dap/query/canvas/table/users/data", count=1)
    proc = run_tap(tmp_path, cfg, state=final_state(run1))
    run2 = messages(proc.stdout)
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln and "users" in ln]
    assert len(warnings) == 1, proc.stderr
    assert ("SnapshotRequired" if how == "reload" else "OutOfRange") in warnings[0]
    avs = _by_type(run2, "ACTIVATE_VERSION", "canvas-users")
    assert len(avs) == 1
    assert not _by_type(run2, "ACTIVATE_VERSION", "canvas-accounts")  # still incremental
    _check_order(run2)
    replica.apply(run2)
    _assert_replica(sb, replica, ["users", "accounts"])
    assert _ts(final_state(run2)["bookmarks"]["canvas-users"]["timestamp"]) == _ts(
        sb.latest(NS, "users"))


def test_full_refresh_replaces(sandbox, tmp_path):
    sb = sandbox
    cfg = tap_config(sb, tables=["accounts"])
    run1 = messages(run_tap(tmp_path, cfg).stdout)
    sb.advance(NS, "accounts", inserts=2, updates=1, deletes=3)
    refresh = {**cfg, "full_refresh": True}
    run2 = messages(run_tap(tmp_path, refresh, state=final_state(run1)).stdout)
    assert len(_by_type(run2, "ACTIVATE_VERSION")) == 1
    assert not [r for r in _by_type(run2, "RECORD") if r["record"].get("_sdc_deleted_at")]
    replica = Replica()
    replica.apply(run1)
    replica.apply(run2)
    _assert_replica(sb, replica, ["accounts"])


def test_since_until_settings(sandbox, tmp_path):
    sb = sandbox
    start = sb.latest(NS, "users")
    c1 = sb.advance(NS, "users", inserts=2, updates=0, deletes=0)
    c2 = sb.advance(NS, "users", inserts=0, updates=3, deletes=1)
    cfg = tap_config(sb, tables=["users"], since=start, until=c1)
    run = messages(run_tap(tmp_path, cfg).stdout)
    assert not _by_type(run, "ACTIVATE_VERSION")
    recs = _by_type(run, "RECORD")
    assert len(recs) == 2 and all("version" not in r for r in recs)
    state = final_state(run)
    assert _ts(state["bookmarks"]["canvas-users"]["timestamp"]) == _ts(c1)
    # with a bookmark, `since` no longer applies; `until` unset -> latest
    cfg2 = tap_config(sb, tables=["users"], since=start)
    run2 = messages(run_tap(tmp_path, cfg2, state=state).stdout)
    assert len(_by_type(run2, "RECORD")) == 4
    assert _ts(final_state(run2)["bookmarks"]["canvas-users"]["timestamp"]) == _ts(c2)


def test_column_and_stream_deselection(sandbox, tmp_path):
    sb = sandbox
    cfg = tap_config(sb, tables=["users", "accounts", "courses"])
    catalog = json.loads(run_tap(tmp_path, cfg, args=("--discover",)).stdout)
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if md["breadcrumb"] == []:
                md["metadata"]["selected"] = entry["tap_stream_id"] != "canvas-courses"
            elif entry["tap_stream_id"] == "canvas-users" and md["breadcrumb"][-1] in (
                    "name", "id"):
                md["metadata"]["selected"] = False
    sb.reset_stats()
    run = messages(run_tap(tmp_path, cfg, catalog=catalog).stdout)
    assert {m["stream"] for m in _by_type(run, "SCHEMA")} == {"canvas-users", "canvas-accounts"}
    schema = _by_type(run, "SCHEMA", "canvas-users")[0]["schema"]
    assert "name" not in schema["properties"] and "id" in schema["properties"]
    recs = [r["record"] for r in _by_type(run, "RECORD", "canvas-users")]
    assert recs and all("name" not in r and "id" in r for r in recs)
    stats = sb.stats()
    assert stats["requests"].get("get_schema") == 2  # deselected streams: no schema call
    assert set(stats["jobs"]) == {"canvas.users", "canvas.accounts"}


def test_discovery_and_connection_test_start_no_job(sandbox, tmp_path):
    sb = sandbox
    sb.reset_stats()
    cfg = tap_config(sb)
    catalog = json.loads(run_tap(tmp_path, cfg, args=("--discover",)).stdout)
    stats = sb.stats()
    assert stats["jobs_created"] == 0
    assert stats["requests"]["list_tables"] == 1
    assert stats["requests"]["get_schema"] == len(sb.tables(NS))
    names = {s["tap_stream_id"] for s in catalog["streams"]}
    assert names == {f"canvas-{t}" for t in sb.tables(NS)}
    users = next(s for s in catalog["streams"] if s["tap_stream_id"] == "canvas-users")
    root = next(m for m in users["metadata"] if m["breadcrumb"] == [])["metadata"]
    assert root["schema-version"] == sb.schema(NS, "users")["version"]
    assert users["key_properties"] == ["id"]

    sb.reset_stats()
    proc = run_tap(tmp_path, cfg, args=("--test",))
    stats = sb.stats()
    assert stats["jobs_created"] == 0
    assert "Connection OK" in proc.stderr
    assert not proc.stdout.strip()


def test_env_fallback_and_missing_credentials(sandbox, tmp_path):
    sb = sandbox
    proc = run_tap(tmp_path, {"tables": ["accounts"]}, env=sb.env(), args=("--test",))
    assert "Connection OK" in proc.stderr
    proc = run_tap(tmp_path, {"base_url": sb.url}, check=False)
    assert proc.returncode != 0
    assert "client_id" in proc.stderr and "DAP_CLIENT_ID" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_secrets_in_debug_output(sandbox, tmp_path):
    sb = sandbox
    cfg = tap_config(sb, tables=["accounts"])
    for env in ({"LOGLEVEL": "DEBUG"}, {"TAP_CANVAS_DATA2_LOGLEVEL": "DEBUG"}):
        proc = run_tap(tmp_path, cfg, env=env)
        assert "DEBUG" in proc.stderr
        assert sb.client_secret not in proc.stderr
        assert sb.client_secret not in proc.stdout
    proc = run_tap(tmp_path, {"tables": ["accounts"]},
                   env={**sb.env(), "LOGLEVEL": "DEBUG"}, args=("--about", "--format", "json"))
    assert sb.client_secret not in proc.stdout + proc.stderr


def test_stream_maps_use_sdk_path_with_same_result(sandbox, tmp_path):
    sb = sandbox
    cfg = tap_config(sb, tables=["accounts", "users"])
    fast = messages(run_tap(tmp_path, cfg).stdout)
    mapped = messages(run_tap(
        tmp_path, {**cfg, "stream_maps": {"canvas-accounts": {"id2": "id * 2"}}}
    ).stdout)
    recs_fast = [r["record"] for r in _by_type(fast, "RECORD", "canvas-users")]
    recs_sdk = [r["record"] for r in _by_type(mapped, "RECORD", "canvas-users")]
    assert recs_fast == recs_sdk
    acc = [r["record"] for r in _by_type(mapped, "RECORD", "canvas-accounts")]
    assert acc and all(r["id2"] == r["id"] * 2 for r in acc)
    assert [m["type"] for m in fast if m["type"] != "RECORD"] == [
        m["type"] for m in mapped if m["type"] != "RECORD"]


def test_sandbox_base_url(tmp_path):
    proc = run_tap(tmp_path, {"base_url": "sandbox", "tables": ["enrollment_terms"]})
    msgs = messages(proc.stdout)
    assert _by_type(msgs, "RECORD") and _by_type(msgs, "ACTIVATE_VERSION")
