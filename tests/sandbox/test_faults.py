"""Every fault kind is observable over HTTP, fires ``count`` times, and respects ``path``."""

from __future__ import annotations

import gzip
import http.client
import socket
from urllib.parse import urlsplit

import pytest
import requests

from tap_canvas_data2.sandbox import FAULT_KINDS, Sandbox

from .dapio import Api


@pytest.mark.parametrize("kind, status", [("http_429", 429), ("http_500", 500),
                                          ("http_503", 503)])
def test_http_status_faults(sb, api, kind, status):
    sb.inject(kind, path="/dap/query", count=2, retry_after=3)
    for _ in range(2):
        r = api.get("/dap/query/canvas/table")
        assert r.status_code == status
        assert r.headers["Content-Type"] == "application/json"
        assert set(r.json()["error"]) >= {"type", "uuid", "message"}
        if status == 429:
            assert r.headers["Retry-After"] == "3"
    assert api.get("/dap/query/canvas/table").status_code == 200  # count exhausted
    assert sb.stats()["faults_fired"][kind] == 2


def test_path_filter(sb, api):
    sb.inject("http_500", path="/dap/job")
    assert api.get("/dap/query/canvas/table").status_code == 200
    job = api.post("/dap/query/canvas/table/accounts/data", {"format": "tsv"}).json()
    assert api.get(f"/dap/job/{job['id']}").status_code == 500
    assert api.get(f"/dap/job/{job['id']}").status_code == 200


def test_drop_connection(sb, api):
    sb.inject("drop_connection", path="/dap/query")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sb.url}/dap/query/canvas/table", headers=api.headers(), timeout=10)
    assert api.get("/dap/query/canvas/table").status_code == 200


def test_drop_mid_download(sb, api):
    job = api.job("submissions", format="tsv")
    url = api.urls(job)[0]
    sb.inject("drop_mid_download")
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"{parts.path}?{parts.query}")
    resp = conn.getresponse()
    assert resp.status == 200
    size = int(resp.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as exc:
        resp.read()
    assert 0 < len(exc.value.partial) < size
    conn.close()
    r = requests.get(url, timeout=10)  # the next download is whole
    assert len(r.content) == size
    gzip.decompress(r.content)


@pytest.mark.parametrize("kind, word", [("token_expire", "expired"), ("token_revoke", "revoked")])
def test_token_faults(sb, api, kind, word):
    assert api.get("/dap/query/canvas/table").status_code == 200
    sb.inject(kind)
    r = api.get("/dap/query/canvas/table")
    assert r.status_code == 401 and word in r.json()["error"]["message"]
    assert set(r.json()["error"]) == {"type", "uuid", "message"}
    api.token = api.login()  # a new token works
    assert api.get("/dap/query/canvas/table").status_code == 200


def test_token_lifetime():
    with Sandbox(token_ttl=1) as sb:
        api = Api(sb)
        import time
        time.sleep(1.2)
        assert api.get("/dap/query/canvas/table").status_code == 401


def test_url_expire(sb, api):
    job = api.job("accounts", format="tsv")
    sb.inject("url_expire")
    url = api.urls(job)[0]
    r = requests.get(url, timeout=10)
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    assert requests.get(api.urls(job)[0], timeout=10).status_code == 200
    bad = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(bad, timeout=10).status_code == 403


def test_url_lifetime():
    with Sandbox(url_ttl=-1) as sb:  # issued already past their lifetime
        api = Api(sb)
        job = api.job("accounts", format="tsv")
        assert requests.get(api.urls(job)[0], timeout=10).status_code == 403


def test_job_fail(sb, api):
    sb.inject("job_fail")
    job = api.job("accounts", format="tsv")
    assert job["status"] == "failed"
    assert set(job) == {"id", "status", "expires_at", "error"}
    assert set(job["error"]) == {"type", "uuid", "message"}
    assert api.job("accounts", format="tsv")["status"] == "complete"


def test_job_expiring(sb, api):
    from datetime import datetime, timezone
    sb.inject("job_expiring")
    job = api.job("accounts", format="tsv")
    left = (datetime.fromisoformat(job["expires_at"].replace("Z", "+00:00"))
            - datetime.now(timezone.utc)).total_seconds()
    assert 0 < left < 30
    job = api.job("accounts", format="tsv")
    left = (datetime.fromisoformat(job["expires_at"].replace("Z", "+00:00"))
            - datetime.now(timezone.utc)).total_seconds()
    assert left > 23 * 3600


@pytest.mark.parametrize("kind, type_", [("snapshot_required", "SnapshotRequiredError"),
                                         ("out_of_range", "OutOfRangeError")])
def test_window_faults(sb, api, kind, type_):
    at = api.job("accounts", format="tsv")["at"]
    sb.inject(kind)
    assert api.job("accounts", format="tsv")["status"] == "complete"  # snapshots unaffected
    r = api.post("/dap/query/canvas/table/accounts/data", {"format": "tsv", "since": at})
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == type_ and "since" in err and "until" in err
    assert api.job("accounts", format="tsv", since=at)["status"] == "complete"


def test_clear_faults_and_unknown_kind(sb, api):
    sb.inject("http_500", count=5)
    sb.clear_faults()
    assert api.get("/dap/query/canvas/table").status_code == 200
    with pytest.raises(ValueError):
        sb.inject("meteor_strike")
    assert len(FAULT_KINDS) == 13
    with pytest.raises(ValueError):
        sb.inject("http_403", type="AccountOnFire")


@pytest.mark.parametrize("type_", ["AccountDisabled", "AccountNotOnboarded",
                                   "AccountUnderMaintenance", "RequestTypeForbidden"])
def test_http_403_account_errors(sb, api, type_):
    # over the admin endpoint, as out-of-process users arm it
    assert requests.post(sb.url + "/_sandbox/inject",
                         json={"kind": "http_403", "type": type_, "path": "/dap/"}).ok
    r = api.get("/dap/query/canvas/table")
    assert r.status_code == 403 and r.json()["error"]["type"] == type_
    assert r.json()["error"]["uuid"] and r.json()["error"]["message"]
    assert api.get("/dap/query/canvas/table").status_code == 200  # count=1: once


def test_admin_over_http(sb, api):
    u = sb.url + "/_sandbox"
    assert requests.post(f"{u}/inject", json={"kind": "http_503", "count": 1}).status_code == 200
    assert api.get("/dap/query/canvas/table").status_code == 503
    r = requests.post(f"{u}/advance", json={"namespace": "canvas", "table": "users",
                                            "inserts": 2, "updates": 1, "deletes": 1})
    ts = r.json()["ts"]
    assert sb.latest("canvas", "users") == ts
    assert requests.post(f"{u}/bump_schema", json={"namespace": "canvas",
                                                   "table": "users"}).json()["version"] >= 2
    lines = requests.get(f"{u}/expected", params={"namespace": "canvas",
                                                  "table": "users"}).text.splitlines()
    assert len(lines) == len(list(sb.expected_rows("canvas", "users")))
    r = requests.get(f"{u}/expected", params={"namespace": "canvas", "table": "nope"})
    assert r.status_code == 404 and r.json()["error"]["kind"] == "table"
    tables = requests.get(f"{u}/tables").json()["namespaces"]
    assert "users" in tables["canvas"] and len(tables["edge_cases"]) == 1
    stats = requests.get(f"{u}/stats").json()
    assert stats["requests"]["list_tables"] >= 1 and stats["faults_fired"]["http_503"] == 1
    assert requests.post(f"{u}/reload", json={"namespace": "canvas",
                                              "table": "users"}).status_code == 200
    assert requests.post(f"{u}/clear_faults").status_code == 200
    assert requests.post(f"{u}/nope").status_code == 400
    assert requests.post(f"{u}/pregenerate", json={"namespace": "canvas",
                                                   "table": "users"}).json()["objects"] >= 1


def test_loopback_only_admin_is_enforced_by_address():
    # the sandbox binds 127.0.0.1 by default, so nothing else can reach it at all
    with Sandbox() as sb:
        assert urlsplit(sb.url).hostname == "127.0.0.1"
        s = socket.create_connection((urlsplit(sb.url).hostname, urlsplit(sb.url).port))
        s.close()
