"""Fixtures for the tap tests: a real sandbox DAP API on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import pytest

from tap_canvas_data2.sandbox import Sandbox

#: small tables keep every test fast; all 10 sandbox tables take part in the round trips
SMALL_ROWS = {
    "accounts": 20, "assignments": 60, "course_sections": 30, "courses": 40,
    "discussion_topics": 30, "enrollment_terms": 10, "enrollments": 80, "pseudonyms": 50,
    "submissions": 300, "users": 60,
}


@pytest.fixture
def sandbox():
    """A fresh sandbox per test (tests mutate it: advance, bump_schema, reload, faults)."""
    with Sandbox(seed=11, rows=SMALL_ROWS) as sb:
        yield sb


@pytest.fixture(scope="module")
def shared_sandbox():
    """A sandbox shared by read-only tests of a module."""
    with Sandbox(seed=5, rows=SMALL_ROWS) as sb:
        yield sb
