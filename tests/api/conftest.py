"""Fixtures for the DAP API client tests: a real sandbox over HTTP and a fast client."""

from __future__ import annotations

import pytest

from tap_canvas_data2.api.client import DAPClient
from tap_canvas_data2.sandbox import Sandbox

FAST = dict(max_retries=4, backoff_base=0.01, backoff_max=0.05, retry_after_default=0.2,
            poll_interval_initial=0.01, poll_interval_max=0.05, jobs_per_minute=100_000,
            job_rerun_margin=0.05, timeout=(5, 10))


@pytest.fixture
def sb():
    with Sandbox(seed=11, rows={"users": 1200, "accounts": 50}, rows_per_object=300) as s:
        yield s


def make_client(sb: Sandbox, **kw) -> DAPClient:
    return DAPClient(sb.url, sb.client_id, sb.client_secret, **{**FAST, **kw})


@pytest.fixture
def client(sb):
    with make_client(sb) as c:
        yield c


def rows_by_key(records, key="id"):
    return sorted((r for _a, _t, r in records), key=lambda r: r[key])
