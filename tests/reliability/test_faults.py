"""Fault matrix through the real pipe `tap-canvas-data2 | target-dap-sql` (two processes).

For every fault: the run either completes with the database equal to the sandbox's
`expected_rows`, or stops with a one-line error (no traceback), a non-zero exit and no
bookmark advanced (every STATE the target printed keeps the stream's previous bookmark);
then a rerun from the last state completes equal to expected. Faults that the API client
is built to absorb (429, 5xx bursts, dropped connections, expired tokens/URLs/jobs,
SnapshotRequired, OutOfRange) must complete.
"""

from __future__ import annotations

import threading
import time

import pytest

from tap_canvas_data2.sandbox import Sandbox
from tests.reliability import dbkill
from tests.reliability.util import (
    Pipe,
    PipeResult,
    assert_table_equals_sandbox,
    last_line,
    run_pipe,
    tap_config,
)

NS = "canvas"
STREAM = "canvas-users"


@pytest.fixture(scope="module")
def sb():
    # several objects per job (downloads can fail mid-job); jobs take two polls (a window
    # for mid-run token faults)
    with Sandbox(seed=23, rows={"users": 3000, "accounts": 40}, rows_per_object=500,
                 job_polls=2) as s:
        yield s


@pytest.fixture(autouse=True)
def _no_leftover_faults(sb):
    sb.clear_faults()
    yield
    sb.clear_faults()


def _mid_run(sb, kind: str):
    """Arm ``kind`` (token_expire / token_revoke) as soon as the run created its first job."""
    def arm():
        base = sb.stats()["jobs_created"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sb.stats()["jobs_created"] == base:
            time.sleep(0.005)
        sb.inject(kind)
    th = threading.Thread(target=arm, daemon=True)
    th.start()
    return th


#: name -> (phase, arm(sb) before the run, fault kind counted in stats, must complete)
CASES = {
    "http_429_retry_after": ("incremental", lambda sb: sb.inject(
        "http_429", path="/dap/query", count=2, retry_after=1), "http_429", True),
    "http_500_burst": ("snapshot", lambda sb: sb.inject(
        "http_500", path="/dap/", count=3), "http_500", True),
    "http_503_burst": ("incremental", lambda sb: sb.inject(
        "http_503", path="/dap/", count=3), "http_503", True),
    "http_503_storm_beyond_retries": ("incremental", lambda sb: sb.inject(
        "http_503", path="/dap/", count=50), "http_503", False),
    "drop_connection": ("incremental", lambda sb: sb.inject(
        "drop_connection", path="/dap/", count=2), "drop_connection", True),
    "drop_mid_download": ("snapshot", lambda sb: sb.inject(
        "drop_mid_download", path="/objects", count=2), "drop_mid_download", True),
    "url_expire": ("snapshot", lambda sb: sb.inject("url_expire", count=2), "url_expire", True),
    "job_fail": ("incremental", lambda sb: sb.inject("job_fail"), "job_fail", False),
    "job_expiring": ("snapshot", lambda sb: sb.inject("job_expiring"), "job_expiring", True),
    "snapshot_required": ("incremental", lambda sb: sb.inject("snapshot_required"),
                          "snapshot_required", True),
    "out_of_range": ("incremental", lambda sb: sb.inject("out_of_range"), "out_of_range", True),
    "token_expire_mid_run": ("incremental", lambda sb: _mid_run(sb, "token_expire"),
                             "token_expire", True),
    "token_revoke_mid_run": ("snapshot", lambda sb: _mid_run(sb, "token_revoke"),
                             "token_revoke", True),
}


def _bookmark(state: dict | None, stream: str = STREAM):
    return ((state or {}).get("bookmarks") or {}).get(stream)


def check_outcome(sb, url, tmp_path, r: PipeResult, before: dict | None, tables: list[str],
                  *, must_complete: bool, label: str) -> dict:
    """Assert the completes-or-stops-cleanly contract; rerun after a stop. Returns the
    final state."""
    if not r.ok:
        assert not must_complete, f"{label}: the run should have recovered\n{r.describe()}"
        for who, rc, err in (("tap", r.tap_rc, r.tap_stderr),
                             ("target", r.target_rc, r.target_stderr)):
            if rc:
                line = last_line(err)
                assert "Traceback" not in err, f"{label}: {who} traceback\n{r.describe()}"
                assert ": error: " in line, f"{label}: {who} last line {line!r}\n{r.describe()}"
        # committed STATEs may advance streams that finished, never all of them
        failed = [f"{NS}-{t}" for t in tables]
        last = r.last_state
        if last is not None and before is not None:
            assert any(_bookmark(last, s) == _bookmark(before, s) for s in failed), \
                f"{label}: every bookmark advanced although the run failed\n{r.describe()}"
        elif last is not None and before is None:
            assert any(_bookmark(last, s) is None for s in failed), r.describe()
        sb.clear_faults()  # the fault is over (e.g. the rest of a 503 storm)
        r2 = run_pipe(tmp_path, tap_config(sb, tables=tables), {"connection_string": url},
                      state=last if last is not None else before)
        assert r2.ok, f"{label}: rerun after the failure\n{r2.describe()}"
        r = r2
    else:
        for t in tables:
            assert _bookmark(r.last_state, f"{NS}-{t}") is not None, r.describe()
    for t in tables:
        assert_table_equals_sandbox(url, sb, NS, t, label=f"{label}: {t}")
    return r.last_state


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_fault(sb, db_url, tmp_path, case):
    phase, arm, kind, must_complete = CASES[case]
    tables = ["users"]
    cfg = tap_config(sb, tables=tables)
    target = {"connection_string": db_url}
    before = None
    if phase == "incremental":
        r = run_pipe(tmp_path, cfg, target)
        assert r.ok, r.describe()
        before = r.last_state
        sb.advance(NS, "users", inserts=40, updates=60, deletes=15)
    fired = sb.stats()["faults_fired"].get(kind, 0)
    armer = arm(sb)
    r = run_pipe(tmp_path, cfg, target, state=before)
    if isinstance(armer, threading.Thread):
        armer.join(5)
    assert sb.stats()["faults_fired"].get(kind, 0) > fired, f"{case}: fault never fired"
    if case.startswith("token_"):
        assert "401" not in last_line(r.tap_stderr)
    check_outcome(sb, db_url, tmp_path, r, before, tables, must_complete=must_complete,
                  label=case)


def test_real_reload_and_retention(sb, pg_url, tmp_path):
    """A real table reload (SnapshotRequired) and expired history (OutOfRange) between runs."""
    tables = ["users"]
    cfg = tap_config(sb, tables=tables)
    target = {"connection_string": pg_url}
    r = run_pipe(tmp_path, cfg, target)
    state = check_outcome(sb, pg_url, tmp_path, r, None, tables, must_complete=True,
                          label="first")
    sb.advance(NS, "users", inserts=5, updates=5, deletes=5)
    sb.reload(NS, "users")
    r = run_pipe(tmp_path, cfg, target, state=state)
    state = check_outcome(sb, pg_url, tmp_path, r, state, tables, must_complete=True,
                          label="reload")
    sb.advance(NS, "users", inserts=5, updates=5, deletes=5)
    sb.expire_history(NS, "users")
    sb.advance(NS, "users", inserts=5, updates=5, deletes=5)
    r = run_pipe(tmp_path, cfg, target, state=state)
    check_outcome(sb, pg_url, tmp_path, r, state, tables, must_complete=True,
                  label="expire_history")


# --------------------------------------------------------------------------- database faults


@pytest.fixture(scope="module")
def big():
    """A table big enough that its load takes a while (several batches)."""
    with Sandbox(seed=29, rows={"enrollment_terms": 60_000, "accounts": 40},
                 rows_per_object=10_000, job_polls=3) as s:
        s.pregenerate(NS, "enrollment_terms")
        yield s


@pytest.fixture(params=["postgresql", "mysql"])
def server_url(request, tmp_path):
    from tests.helpers.databases import database

    with database(request.param, str(tmp_path)) as url:
        yield url


def test_db_connection_lost_mid_batch(big, server_url, tmp_path):
    tables = ["enrollment_terms"]
    cfg = tap_config(big, tables=tables)
    target = {"connection_string": server_url, "batch_size_rows": 10_000}
    pipe = Pipe(tmp_path, cfg, target)
    try:
        killed = dbkill.kill_when_loading(server_url, pipe.running)
        r = pipe.wait(120)
    finally:
        pipe.close()
    assert killed, f"the load ended before a loading statement was seen\n{r.describe()}"
    assert r.target_rc != 0 or r.ok, r.describe()
    if not r.ok:
        line = last_line(r.target_stderr)
        assert "connection" in line.lower() and "run" in line.lower(), line
    check_outcome(big, server_url, tmp_path, r, None, tables, must_complete=False,
                  label="connection lost mid-batch")


def test_db_restart_between_batches(big, server_url, tmp_path):
    """Every connection of the database is killed right after the first table's STATE was
    committed and printed (the tap is then waiting for the next job)."""
    tables = ["accounts", "enrollment_terms"]
    cfg = tap_config(big, tables=tables)
    target = {"connection_string": server_url, "batch_size_rows": 10_000}
    pipe = Pipe(tmp_path, cfg, target)
    out = pipe.dir / "target.out"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and pipe.running() and not (
                out.exists() and out.read_text().strip()):
            time.sleep(0.005)
        killed = dbkill.kill_all(server_url)
        r = pipe.wait(120)
    finally:
        pipe.close()
    assert killed, r.describe()
    assert r.states and _bookmark(r.states[0], "canvas-accounts"), r.describe()
    check_outcome(big, server_url, tmp_path, r, None, tables, must_complete=False,
                  label="database restart between batches")
