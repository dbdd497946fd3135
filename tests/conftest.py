"""Shared fixtures: fresh real databases per test, and a running sandbox DAP API."""

from __future__ import annotations

import pytest

from tests.helpers.databases import database

DIALECTS = ["postgresql", "mysql", "sqlite"]


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path) -> str:
    """A fresh database of each dialect in turn (the test runs three times)."""
    with database(request.param, str(tmp_path)) as url:
        yield url


@pytest.fixture
def pg_url(tmp_path) -> str:
    with database("postgresql", str(tmp_path)) as url:
        yield url


@pytest.fixture
def mysql_url(tmp_path) -> str:
    with database("mysql", str(tmp_path)) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    with database("sqlite", str(tmp_path)) as url:
        yield url
