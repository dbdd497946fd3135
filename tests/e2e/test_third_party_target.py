"""The tap's output loads unchanged into another Singer target: MeltanoLabs
`target-postgres` (PyPI `meltanolabs-target-postgres`), as the README promises.

The target lives in a venv of its own, outside the repository, made once per machine and
reused (like the official dap client, tests/helpers/dap_cli.py):

    ${TARGET_POSTGRES_VENV:-${XDG_CACHE_HOME:-~/.cache}/tap-canvas-data2/target-postgres-<version>-venv}

`tap-canvas-data2 | target-postgres` runs as a real shell pipe into a fresh PostgreSQL
database (`default_target_schema: canvas`, so stream `canvas-users` is table canvas.users).

What that target (0.8.1) does, asserted as it is, with `hard_delete: true` (schema canvas)
and `hard_delete: false`, its default (schema canvas_soft):
- snapshot: every table's row count and key set equal the sandbox's;
- incremental with deletes: in BOTH modes a delete record (key + `_sdc_deleted_at`) becomes a
  tombstone row (key, `_sdc_deleted_at` = the delete's commit time, other columns NULL):
  target-postgres applies `hard_delete` to ACTIVATE_VERSION only. The live rows
  (`_sdc_deleted_at IS NULL`) equal the sandbox's; the tombstones are exactly the deleted keys;
- full refresh (`full_refresh: true`: snapshot + ACTIVATE_VERSION): with `hard_delete: true`
  the tombstones are deleted and row count and key set equal the sandbox's again; without,
  they stay marked deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.util import NS, canvas_tables, run_pipe, small_sandbox, tap_config
from tests.helpers import db_compare as dbc

VERSION = "0.8.1"
REQUIREMENT = f"meltanolabs-target-postgres=={VERSION}"
_MARKER = ".tap-canvas-data2-complete"
CHANGES = {"users": (3, 4, 3), "accounts": (1, 2, 2), "submissions": (2, 3, 4)}


def venv_dir() -> Path:
    override = os.environ.get("TARGET_POSTGRES_VENV")
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tap-canvas-data2" / f"target-postgres-{VERSION}-venv"


def _works(venv: Path) -> bool:
    exe = venv / "bin" / "target-postgres"
    if not (venv / _MARKER).exists() or not exe.exists():
        return False
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and VERSION in proc.stdout + proc.stderr


def ensure_target_postgres() -> Path:
    """The `target-postgres` executable, installing its venv first when needed (serialized
    with a lock file; a half-made venv is made again)."""
    venv = venv_dir()
    if not _works(venv):
        venv.parent.mkdir(parents=True, exist_ok=True)
        with open(venv.parent / (venv.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not _works(venv):
                    if venv.exists():
                        shutil.rmtree(venv)
                    python = shutil.which("python3") or sys.executable
                    for cmd in ([python, "-m", "venv", str(venv)],
                                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                                 "--disable-pip-version-check", "--no-input", REQUIREMENT]):
                        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                        if proc.returncode != 0:
                            pytest.fail(f"cannot install {REQUIREMENT} into {venv}:\n"
                                        f"$ {' '.join(cmd)}\n{proc.stdout[-3000:]}\n"
                                        f"{proc.stderr[-3000:]}", pytrace=False)
                    (venv / _MARKER).write_text(f"{REQUIREMENT}\n{time.ctime()}\n")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return venv / "bin" / "target-postgres"


def live_keys(url: str, schema: str, table: str, *, soft: bool) -> list[int]:
    where = " WHERE _sdc_deleted_at IS NULL" if soft else ""
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        cur.execute(f'SELECT id FROM "{schema}"."{table}"{where} ORDER BY id')
        return [r[0] for r in cur.fetchall()]


def deleted_keys(url: str, schema: str, table: str) -> list[int]:
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        cur.execute(f'SELECT id FROM "{schema}"."{table}" WHERE _sdc_deleted_at IS NOT NULL '
                    "ORDER BY id")
        return [r[0] for r in cur.fetchall()]


def tombstones(url: str, schema: str, table: str) -> list[tuple]:
    """(_sdc_deleted_at, created_at) of the rows marked deleted."""
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        cur.execute(f'SELECT _sdc_deleted_at, created_at FROM "{schema}"."{table}" '
                    "WHERE _sdc_deleted_at IS NOT NULL ORDER BY id")
        return cur.fetchall()


def expected_keys(sb, table: str) -> list[int]:
    return sorted(r["id"] for r in sb.expected_rows(NS, table))


def check(sb, url: str, schema: str, tables: list[str], stage: str, *, soft: bool) -> None:
    problems = []
    for t in tables:
        have, want = live_keys(url, schema, t, soft=soft), expected_keys(sb, t)
        if have != want:
            problems.append(f"{schema}.{t}: {len(have)} rows, sandbox {len(want)}; "
                            f"missing {sorted(set(want) - set(have))[:5]}, "
                            f"extra {sorted(set(have) - set(want))[:5]}")
    assert not problems, f"{stage}:\n  " + "\n  ".join(problems)


def test_tap_into_meltanolabs_target_postgres(pg_url, tmp_path):
    target = ensure_target_postgres()
    tables = canvas_tables()
    sqlalchemy_url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    modes = {"canvas": True, "canvas_soft": False}  # schema -> hard_delete
    with small_sandbox(seed=51) as sb:
        states = {}
        for schema, hard in modes.items():
            cfg = {"sqlalchemy_url": sqlalchemy_url, "default_target_schema": schema,
                   "hard_delete": hard}
            run = run_pipe(tmp_path / f"{schema}-1", tap_config(sb), cfg, target=str(target))
            states[schema] = (cfg, run.last_state)
            check(sb, pg_url, schema, tables, f"snapshot into target-postgres ({schema})",
                  soft=False)

        deleted = {}
        for t, (i, u, d) in CHANGES.items():
            before = set(expected_keys(sb, t))
            sb.advance(NS, t, inserts=i, updates=u, deletes=d)
            deleted[t] = sorted(before - set(expected_keys(sb, t)))
            assert len(deleted[t]) == d

        for schema in modes:
            cfg, state = states[schema]
            run = run_pipe(tmp_path / f"{schema}-2", tap_config(sb), cfg, state=state,
                           target=str(target))
            states[schema] = (cfg, run.last_state)
            # Either way the deletes arrive as tombstones: the key, `_sdc_deleted_at` = the
            # delete's commit time, every other column NULL. target-postgres applies
            # `hard_delete` to ACTIVATE_VERSION only, not to `_sdc_deleted_at` records.
            check(sb, pg_url, schema, tables, f"incremental ({schema}), live rows", soft=True)
            for t in tables:
                assert deleted_keys(pg_url, schema, t) == deleted.get(t, []), (
                    f"{schema}.{t}: rows marked deleted differ from the deleted keys")
            for t in CHANGES:
                for ts, name in tombstones(pg_url, schema, t):
                    assert dbc.format_datetime(ts) == dbc.format_datetime(
                        dbc.parse_datetime(sb.latest(NS, t))), (schema, t, ts)
                    assert name is None, (schema, t, name)

        # A full refresh (snapshot + ACTIVATE_VERSION): with hard_delete the tombstones and
        # every row not in the new snapshot are deleted; without, they stay marked deleted.
        for schema, hard in modes.items():
            cfg, state = states[schema]
            run_pipe(tmp_path / f"{schema}-3", tap_config(sb, full_refresh=True), cfg,
                     state=state, target=str(target))
            check(sb, pg_url, schema, tables, f"full refresh ({schema})", soft=not hard)
            if not hard:
                for t in tables:
                    assert deleted_keys(pg_url, schema, t) == deleted.get(t, []), (schema, t)
