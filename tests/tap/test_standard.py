"""singer-sdk's standard tap tests against the sandbox (two small tables, no job storm)."""

from __future__ import annotations

import atexit

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_canvas_data2.sandbox import Sandbox
from tap_canvas_data2.tap import TapCanvasData2

# The standard test class discovers streams when it is built (at import), so the sandbox
# must already be running then.
_SANDBOX = Sandbox(seed=3, rows={"accounts": 20, "users": 40}).start()
atexit.register(_SANDBOX.stop)

CONFIG = {
    "client_id": _SANDBOX.client_id,
    "client_secret": _SANDBOX.client_secret,
    "base_url": _SANDBOX.url,
    "tables": ["accounts", "users"],
    "jobs_per_minute": 1000,
    "poll_interval_max": 0.05,
}

_Standard = get_tap_test_class(
    tap_class=TapCanvasData2,
    config=CONFIG,
    suite_config=SuiteConfig(max_records_limit=1000),
)


class TestTapCanvasData2Standard(_Standard):
    """The SDK's standard tap, stream and attribute tests."""


@pytest.fixture(scope="module", autouse=True)
def _stop_sandbox():
    yield
    _SANDBOX.stop()
    stats = _SANDBOX.stats()
    # one snapshot job per table for the whole suite (the runner syncs once per class)
    assert stats["jobs_created"] <= 2 * len(CONFIG["tables"]), stats
