"""DAPClient against the real sandbox over HTTP: the happy path and one test per fault kind."""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest

from tap_canvas_data2.api.client import DAPClient, parse_timestamp
from tap_canvas_data2.api.errors import (
    AccountDisabledError,
    AccountError,
    AccountNotOnboardedError,
    AccountUnderMaintenanceError,
    AuthenticationError,
    JobFailedError,
    NotFoundError,
    OutOfRangeError,
    RequestTypeForbiddenError,
    ServerError,
    SnapshotRequiredError,
    TransportError,
)
from tap_canvas_data2.api.objects import ObjectParser
from tap_canvas_data2.sandbox import Sandbox
from tests.api.conftest import FAST, make_client, rows_by_key


def expected(sb, table="users"):
    return list(sb.expected_rows("canvas", table))


# --------------------------------------------------------------------------- happy path


@pytest.mark.parametrize("fmt,mode", [("tsv", "condensed"), ("jsonl", "condensed"),
                                      ("csv", "condensed"), ("tsv", "expanded"),
                                      ("jsonl", None)])
def test_snapshot_matches_expected_rows(sb, client, fmt, mode):
    schema, version = client.get_schema("canvas", "users")
    job = client.snapshot("canvas", "users", format=fmt, mode=mode)
    assert job.kind == "snapshot" and job.schema_version == version
    assert job.at == parse_timestamp(job.at_str) and job.at.tzinfo is not None
    assert job.bookmark == job.at_str == sb.latest("canvas", "users")
    assert len(job.objects) == 4  # 1200 rows, 300 per object
    recs = list(client.records(job, schema))
    assert {a for a, _, _ in recs} == {"U"}
    assert rows_by_key(recs) == expected(sb)


def test_every_table_every_format(sb, client):
    for table in client.list_tables("canvas"):
        schema, _ = client.get_schema("canvas", table)
        key = next(iter(schema["properties"]["key"]["properties"]))
        want = sorted(sb.expected_rows("canvas", table), key=lambda r: r[key])
        for fmt in ("tsv", "jsonl", "csv"):
            job = client.snapshot("canvas", table, format=fmt)
            got = rows_by_key(client.records(job, schema), key)
            assert got == want, (table, fmt)


def test_incremental_window_and_deletes(sb, client):
    schema, _ = client.get_schema("canvas", "users")
    snap = client.snapshot("canvas", "users")
    before = {r["id"]: r for r in expected(sb)}
    sb.advance("canvas", "users", inserts=4, updates=5, deletes=3)
    inc = client.incremental("canvas", "users", since=snap.bookmark)
    assert inc.kind == "incremental" and inc.since_str == snap.bookmark
    assert inc.until_str == sb.latest("canvas", "users")
    recs = list(client.records(inc, schema))
    deletes = [r for a, _, r in recs if a == "D"]
    assert len(deletes) == 3 and all(list(r) == ["id"] for r in deletes)
    assert all(r["id"] in before for r in deletes)
    after = {r["id"]: r for r in expected(sb)}
    for a, _, r in recs:
        if a == "U":
            assert after[r["id"]] == r
    # chaining until -> since: nothing new
    again = client.incremental("canvas", "users", since=inc.until)
    assert list(client.records(again, schema)) == []


# --------------------------------------------------------------------------- faults


def test_429_retry_after_is_honoured(sb, client):
    client.list_tables("canvas")  # log in first
    sb.inject("http_429", path="/dap/query", count=1, retry_after=1)
    t = time.monotonic()
    assert "users" in client.list_tables("canvas")
    waited = time.monotonic() - t
    assert 0.95 <= waited < 3, waited
    assert sb.stats()["faults_fired"]["http_429"] == 1


def test_429_persisting_is_a_typed_error(sb):
    with make_client(sb, max_retries=1) as c:
        sb.inject("http_429", path="/dap/query", count=5, retry_after=0)
        with pytest.raises(ServerError, match=r"rate-limiting .*429.* after 2 attempts"):
            c.list_tables("canvas")


def test_bursts_of_500_and_503(sb, client):
    sb.inject("http_500", path="/dap/", count=2)
    sb.inject("http_503", path="/dap/", count=2)
    schema, _ = client.get_schema("canvas", "users")
    assert "key" in schema["properties"]
    fired = sb.stats()["faults_fired"]
    assert fired["http_500"] == 2 and fired["http_503"] == 2
    sb.inject("http_503", path="/dap/", count=50)
    with pytest.raises(ServerError, match=r"HTTP 503.*after 5 attempts.*try again later"):
        client.get_schema("canvas", "users")


def test_dropped_connections(sb, client):
    sb.inject("drop_connection", path="/dap/", count=3)
    job = client.snapshot("canvas", "accounts")
    assert job.objects
    assert sb.stats()["faults_fired"]["drop_connection"] == 3
    sb.inject("drop_connection", path="/dap/", count=50)
    with pytest.raises(TransportError, match="connection failed"):
        client.list_tables("canvas")


def test_drop_mid_download_is_retried(sb, client):
    schema, _ = client.get_schema("canvas", "users")
    job = client.snapshot("canvas", "users")
    sb.inject("drop_mid_download", path="/objects/", count=3)
    assert rows_by_key(client.records(job, schema)) == expected(sb)
    assert sb.stats()["faults_fired"]["drop_mid_download"] == 3
    # and with temp_dir spooling
    sb.inject("drop_mid_download", path="/objects/", count=2)
    assert rows_by_key(client.records(job, schema, temp_dir=str(sb.data_dir / "spool"))) \
        == expected(sb)


@pytest.mark.parametrize("kind", ["token_expire", "token_revoke"])
def test_token_expired_or_revoked_reauthenticates_once(sb, client, kind):
    client.list_tables("canvas")
    assert sb.stats()["logins"] == 1
    sb.inject(kind)
    assert client.get_schema("canvas", "users")[1] >= 1
    assert sb.stats()["logins"] == 2
    assert client.tokens.logins == 2


def test_token_reused_until_close_to_expiry(sb):
    with Sandbox(seed=1, rows={"accounts": 5}, token_ttl=299) as short:
        with make_client(short) as c:
            c.list_tables("canvas")
            c.list_tables("canvas")  # exp - now < 5 min: a new login every time
            assert short.stats()["logins"] == 2
    with make_client(sb) as c:
        for _ in range(3):
            c.list_tables("canvas")
        assert sb.stats()["logins"] == 1


def test_expired_presigned_url_is_requested_again(sb, client):
    schema, _ = client.get_schema("canvas", "users")
    job = client.snapshot("canvas", "users")
    sb.reset_stats()
    sb.inject("url_expire", count=2)
    assert rows_by_key(client.records(job, schema)) == expected(sb)
    st = sb.stats()
    assert st["faults_fired"]["url_expire"] == 2
    assert st["requests"]["object_urls"] == 3  # one batch + two refreshes
    assert st["errors"].get("get_object 403") == 2


def test_failed_job_is_a_typed_error(sb, client):
    sb.inject("job_fail")
    with pytest.raises(JobFailedError) as ei:
        client.snapshot("canvas", "users")
    err = ei.value
    assert err.job_id and err.error_type == "ProcessingError" and err.uuid
    assert err.job_id in str(err) and f"[error uuid {err.uuid}]" in str(err)
    assert "run the sync again" in str(err) and "\n" not in str(err)


def test_job_expiring_within_30s_is_rerun(sb, client):
    sb.inject("job_expiring")
    job = client.snapshot("canvas", "users")
    st = sb.stats()
    assert st["jobs_created"] == 2
    assert (job.expires_at - parse_timestamp(job.at_str)).total_seconds() > 30 or \
        (job.expires_at.timestamp() - time.time()) > 30


def test_snapshot_required_vs_out_of_range(sb, client):
    snap = client.snapshot("canvas", "users")
    sb.inject("snapshot_required")
    with pytest.raises(SnapshotRequiredError) as e1:
        client.incremental("canvas", "users", since=snap.at)
    sb.inject("out_of_range")
    with pytest.raises(OutOfRangeError) as e2:
        client.incremental("canvas", "users", since=snap.at)
    assert not isinstance(e1.value, OutOfRangeError)
    assert not isinstance(e2.value, SnapshotRequiredError)
    assert e1.value.since and e2.value.until
    assert "full snapshot" in str(e1.value) and "full snapshot" in str(e2.value)
    # the same errors arising from the timeline itself
    sb.advance("canvas", "users", updates=2)
    sb.reload("canvas", "users")
    with pytest.raises(SnapshotRequiredError):
        client.incremental("canvas", "users", since=snap.at_str)
    snap2 = client.snapshot("canvas", "users")
    sb.advance("canvas", "users", updates=2)
    sb.expire_history("canvas", "users")
    with pytest.raises(OutOfRangeError):
        client.incremental("canvas", "users", since=snap2.at_str)


def test_unknown_table_and_job_are_not_found(client):
    with pytest.raises(NotFoundError) as ei:
        client.get_schema("canvas", "no_such_table")
    assert "404" in str(ei.value)
    with pytest.raises(NotFoundError):
        client.snapshot("canvas", "no_such_table")
    with pytest.raises(NotFoundError) as ej:
        client.get_job("00000000-0000-0000-0000-000000000000")
    assert ej.value.kind == "job"


def test_bad_credentials(sb):
    with DAPClient(sb.url, sb.client_id, "wrong-secret-value", **FAST) as c:
        with pytest.raises(AuthenticationError) as ei:
            c.list_tables("canvas")
    msg = str(ei.value)
    assert "DAP_CLIENT_ID / DAP_CLIENT_SECRET" in msg and "wrong-secret-value" not in msg
    assert sb.stats()["logins"] == 1  # the login is not retried on 401


def test_job_creation_spacing(sb):
    with make_client(sb, jobs_per_minute=120) as c:  # 0.5 s apart
        stamps = []
        orig = c._api

        def spy(method, path, **kw):
            if method == "POST" and path.endswith("/data"):
                stamps.append(time.monotonic())
            return orig(method, path, **kw)

        c._api = spy
        for _ in range(3):
            c.snapshot("canvas", "accounts")
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(gaps) == 2 and all(g >= 0.48 for g in gaps), gaps
    assert sb.stats()["jobs_created"] == 3


# --------------------------------------------------------------------------- 403 (sandbox)


@pytest.mark.parametrize("etype,cls", [
    ("AccountDisabled", AccountDisabledError),
    ("AccountNotOnboarded", AccountNotOnboardedError),
    ("AccountUnderMaintenance", AccountUnderMaintenanceError),
    ("RequestTypeForbidden", RequestTypeForbiddenError),
])
def test_403_account_errors(sb, etype, cls):
    # enough 403s to outlast the retries of the retryable AccountUnderMaintenance
    sb.inject("http_403", type=etype, path="/dap/", count=FAST["max_retries"] + 1)
    with make_client(sb) as c:
        with pytest.raises(cls) as ei:
            c.list_tables("canvas")
    assert isinstance(ei.value, AccountError) and ei.value.status == 403
    assert etype in str(ei.value) and ei.value.uuid and f"[error uuid {ei.value.uuid}]" in \
        str(ei.value)
    assert sb.client_secret not in str(ei.value)
    assert sb.stats()["errors"].get("list_tables 403", 0) >= 1
    sb.clear_faults()
    with make_client(sb) as c:  # the account is fine again: same client code works
        assert "users" in c.list_tables("canvas")


# --------------------------------------------------------------------------- downloads


def test_concurrent_download_preserves_object_order(sb, client):
    schema, _ = client.get_schema("canvas", "users")
    job = client.snapshot("canvas", "users")
    parser = ObjectParser(schema, "tsv")
    sequential = []
    for oid in job.objects:  # one object at a time, in order
        for _oid, chunks in client.download(job.__class__(**{**job.__dict__,
                                                              "objects": (oid,)}),
                                            concurrency=1):
            sequential.extend(parser.records(chunks))
    for conc in (2, 4, 8):
        seen = []
        got = []
        for oid, chunks in client.download(job, concurrency=conc):
            seen.append(oid)
            got.extend(parser.records(chunks))
        assert seen == list(job.objects)
        assert got == sequential


def test_memory_stays_flat_while_downloading():
    with Sandbox(seed=5, rows={"users": 100_000}, rows_per_object=10_000) as big:
        with make_client(big) as c:
            job = c.snapshot("canvas", "users")
            assert len(job.objects) == 10
            total = 0
            tracemalloc.start()
            try:
                for _oid, chunks in c.download(job):
                    for data in chunks:
                        total += len(data)
                        time.sleep(0.0005)  # a slow consumer: the downloaders must wait
                _cur, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert total > 30_000_000
    # bounded by concurrency x queue x chunk (4 x 8 x 128 KiB) plus buffers, not by the table
    assert peak < 10_000_000, (peak, total)


def test_temp_dir_spooling_leaves_no_files(sb, tmp_path):
    spool = tmp_path / "spool"
    schema, _ = make_client(sb).get_schema("canvas", "users")
    with make_client(sb, temp_dir=str(spool)) as c:
        job = c.snapshot("canvas", "users")
        seen_files = 0
        got = []
        parser = ObjectParser(schema)
        for _oid, chunks in c.download(job):
            seen_files = max(seen_files, len(os.listdir(spool)))
            got.extend(parser.records(chunks))
        assert rows_by_key(got) == expected(sb)
        assert 1 <= seen_files <= 4
        assert os.listdir(spool) == []
        # abandoning the iteration half-way also cleans up
        it = c.download(job)
        _oid, chunks = next(it)
        next(iter(chunks))
        it.close()
        assert os.listdir(spool) == []
