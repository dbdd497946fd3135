"""Real Meltano (the `meltano` of this venv) with the repository's meltano.yml, as the README
tells users to run it:

    dap-sandbox serve --port P &            # the simulated DAP API, a separate process
    meltano install
    meltano run tap-canvas-data2 target-dap-sql      # first run: snapshots
    dap-sandbox advance --url ... --table users --updates 10
    meltano run tap-canvas-data2 target-dap-sql      # second run: incremental from stored state

The project is a copy of the repository's meltano.yml in a temporary directory; the only
edit is `pip_url: -e .` -> `-e <repository>` (a relative path would point into the temp
directory). The `dev` environment is pointed at the sandbox and at a fresh PostgreSQL
database through the environment variables Meltano documents for plugin settings
(TAP_CANVAS_DATA2_BASE_URL, TARGET_DAP_SQL_CONNECTION_STRING), so the loader's pip_url must
bring the PostgreSQL driver.

Checked: after each run every table equals the sandbox and table_sync is right; after the
second run `meltano state get` shows the bookmarks of the changed tables moved to their new
commits, and the sandbox saw one incremental job per table and no second snapshot.
Then the README's migration path: Meltano's state is cleared and set from the database's
table_sync (`canvas-data2 state --meltano` | `meltano state set --force`), and a third run
continues incrementally from it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

from tests.e2e.util import (
    BIN,
    NS,
    REPO,
    ROWS_PER_TABLE,
    ServedSandbox,
    assert_nothing_later,
    canvas_tables,
    check_bookmarks,
    check_meta,
    check_tables,
    clean_env,
    describe,
    exe,
    jobs_by_kind,
)

STATE_ID = "dev:tap-canvas-data2-to-target-dap-sql"
CHANGES = {"users": (0, 10, 0), "accounts": (2, 3, 1), "submissions": (3, 2, 2)}


def make_project(path) -> None:
    text = (REPO / "meltano.yml").read_text(encoding="utf-8")
    pip_urls = re.findall(r"pip_url: (.*)", text)
    assert pip_urls and all(u.startswith("-e .") for u in pip_urls), pip_urls
    text = re.sub(r"pip_url: -e \.", f"pip_url: -e {REPO}", text)
    path.mkdir(parents=True)
    (path / "meltano.yml").write_text(text, encoding="utf-8")


def meltano(project, env, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([exe("meltano"), *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, describe(proc, limit=12000)
    return proc


def stored_state(project, env) -> dict:
    proc = meltano(project, env, "state", "get", STATE_ID)
    return json.loads(proc.stdout)["singer_state"]


def test_meltano_install_run_snapshot_then_incremental(pg_url, tmp_path):
    assert shutil.which("meltano", path=str(BIN)), "meltano is not installed in this venv"
    project = tmp_path / "project"
    make_project(project)
    tables = canvas_tables()
    rows = {t: ROWS_PER_TABLE for t in tables}
    later: list[str] = []
    with ServedSandbox(tmp_path, seed=41, rows=rows) as sb:
        env = clean_env(TAP_CANVAS_DATA2_BASE_URL=sb.url,
                        TARGET_DAP_SQL_CONNECTION_STRING=pg_url,
                        PATH=f"{BIN}:{clean_env().get('PATH', '')}")

        started = time.monotonic()
        meltano(project, env, "install")
        install_s = time.monotonic() - started
        print(f"meltano install: {install_s:.1f} s")  # shown with -s; ~6 s with uv's cache

        # first run: no state -> one snapshot per table
        meltano(project, env, "run", "tap-canvas-data2", "target-dap-sql")
        assert jobs_by_kind(sb) == {t: {"snapshot": 1, "incremental": 0} for t in tables}
        first = stored_state(project, env)
        check_bookmarks(sb, first, tables, "meltano state after the first run")
        check_tables(sb, pg_url, tables, "after the first meltano run")
        check_meta(sb, pg_url, tables, "after the first meltano run", later)

        # changes upstream, with the README's command
        for t, (i, u, d) in CHANGES.items():
            sb.advance(NS, t, inserts=i, updates=u, deletes=d)

        # second run: incremental from Meltano's stored state
        meltano(project, env, "run", "tap-canvas-data2", "target-dap-sql")
        assert jobs_by_kind(sb) == {t: {"snapshot": 1, "incremental": 1} for t in tables}, (
            "the second meltano run did not continue incrementally from its state")
        second = stored_state(project, env)
        check_bookmarks(sb, second, tables, "meltano state after the second run")
        for t in tables:
            moved = (second["bookmarks"][f"{NS}-{t}"]["timestamp"]
                     != first["bookmarks"][f"{NS}-{t}"]["timestamp"])
            assert moved == (t in CHANGES), (t, first["bookmarks"], second["bookmarks"])
        check_tables(sb, pg_url, tables, "after the second meltano run")
        check_meta(sb, pg_url, tables, "after the second meltano run", later)

        # README "Migrating a database that dap keeps": Meltano state from table_sync
        meltano(project, env, "state", "clear", "--force", STATE_ID)
        proc = subprocess.run([exe("canvas-data2"), "--connection-string", pg_url, "state",
                               "--meltano"], capture_output=True, text=True, env=env,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, describe(proc)
        meltano(project, env, "state", "set", "--force", STATE_ID, proc.stdout.strip())
        assert stored_state(project, env) == json.loads(proc.stdout)["singer_state"]
        sb.advance(NS, "courses", inserts=2, updates=2, deletes=1)
        meltano(project, env, "run", "tap-canvas-data2", "target-dap-sql")
        assert jobs_by_kind(sb) == {t: {"snapshot": 1, "incremental": 2} for t in tables}, (
            "the run from the migrated state did not continue incrementally")
        check_bookmarks(sb, stored_state(project, env), tables, "after the migrated run")
        check_tables(sb, pg_url, tables, "after the run from the migrated state")
    assert_nothing_later(later)
