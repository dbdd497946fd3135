"""Fixtures of the sandbox tests: one shared sandbox for read-only tests, fresh ones otherwise."""

from __future__ import annotations

import pytest

from tap_canvas_data2.sandbox import Sandbox

from .dapio import Api


@pytest.fixture(scope="module")
def shared_sb():
    """A sandbox the tests of one module only read (no advance/faults)."""
    with Sandbox(seed=11, rows_per_object=40) as sb:
        yield sb


@pytest.fixture(scope="module")
def shared_api(shared_sb):
    return Api(shared_sb)


@pytest.fixture
def sb():
    """A fresh sandbox for a test that changes data or arms faults."""
    with Sandbox(seed=3, rows_per_object=50) as s:
        yield s


@pytest.fixture
def api(sb):
    return Api(sb)
