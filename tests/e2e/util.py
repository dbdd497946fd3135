"""Shared pieces of the end-to-end tests: real processes, real pipes, real databases.

Everything here runs the installed console scripts (`tap-canvas-data2`, `target-dap-sql`,
`canvas-data2`, `dap-sandbox`) of the interpreter running pytest (the project's venv), as
separate processes, against a sandbox DAP API on 127.0.0.1, and compares what ends up in
the database with `Sandbox.expected_rows` through tests/helpers/db_compare.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import db_compare as dbc

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NS = "canvas"

# Every canvas table of the sandbox, small: the e2e suite must stay fast on two cores.
# 24 rows in objects of at most 16 rows: every snapshot is a multi-object job.
ROWS_PER_TABLE = 24
ROWS_PER_OBJECT = 16


def exe(name: str) -> str:
    """A console script of this venv (fails clearly when `pip install -e .` was not run)."""
    path = BIN / name
    assert path.exists(), f"{path} is missing: run `{BIN / 'pip'} install -e . --no-deps`"
    return str(path)


def canvas_tables() -> list[str]:
    from tap_canvas_data2.sandbox.catalog import load_definitions

    return sorted(load_definitions()[NS])


def small_sandbox(**options: Any):
    """A started-on-enter Sandbox with every canvas table small and multi-object."""
    from tap_canvas_data2.sandbox import Sandbox

    rows = {t: ROWS_PER_TABLE for t in canvas_tables()}
    options.setdefault("rows_per_object", ROWS_PER_OBJECT)
    return Sandbox(rows=rows, **options)


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without any DAP_* / TAP_* / TARGET_* / MELTANO_* setting that could
    leak into a child process, plus `extra`."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("DAP_", "TAP_CANVAS_DATA2_", "TARGET_DAP_SQL_", "MELTANO_"))
    }
    env.update(extra)
    return env


def tap_config(sb, **extra: Any) -> dict[str, Any]:
    """Tap settings pointing at the sandbox. The sandbox does not limit job creation, so
    the DAP rate (5 jobs/min, i.e. 12 s between tables) is switched off."""
    return {"base_url": sb.url, "client_id": sb.client_id, "client_secret": sb.client_secret,
            "jobs_per_minute": 0, **extra}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def describe(proc: subprocess.CompletedProcess, limit: int = 6000) -> str:
    out = proc.stdout if isinstance(proc.stdout, str) else (proc.stdout or b"").decode()
    err = proc.stderr if isinstance(proc.stderr, str) else (proc.stderr or b"").decode()
    return (f"$ {proc.args if isinstance(proc.args, str) else ' '.join(map(str, proc.args))}\n"
            f"exit code {proc.returncode}\n--- stdout ---\n{out[-limit:]}\n"
            f"--- stderr ---\n{err[-limit:]}")


# --------------------------------------------------------------------------- the shell pipe


@dataclass
class PipeRun:
    """One `tap | target` shell pipeline that has finished."""

    dir: Path
    returncode: int
    states: list[dict[str, Any]] = field(default_factory=list)
    tap_stderr: str = ""
    target_stderr: str = ""
    command: str = ""

    @property
    def last_state(self) -> dict[str, Any]:
        assert self.states, f"the target printed no STATE\n{self.describe()}"
        return self.states[-1]

    def describe(self, limit: int = 5000) -> str:
        return (f"$ {self.command}\nexit {self.returncode}\n"
                f"--- tap stderr ---\n{self.tap_stderr[-limit:]}\n"
                f"--- target stderr ---\n{self.target_stderr[-limit:]}")


def run_pipe(workdir: Path, tap_cfg: dict, target_cfg: dict, state: dict | None = None,
             *, check: bool = True, timeout: float = 300, target: str | None = None) -> PipeRun:
    """Run `tap-canvas-data2 --config c.json [--state s.json] | <target> --config t.json`
    exactly as a user types it in bash (pipefail on), STATE lines to states.jsonl."""
    workdir.mkdir(parents=True, exist_ok=True)
    c = write_json(workdir / "c.json", tap_cfg)
    t = write_json(workdir / "t.json", target_cfg)
    state_arg = ""
    if state is not None:
        state_arg = f" --state {write_json(workdir / 'state.json', state)}"
    target_exe = target or exe("target-dap-sql")
    command = (
        f"set -o pipefail; {exe('tap-canvas-data2')} --config {c}{state_arg} 2> {workdir}/tap.err"
        f" | {target_exe} --config {t} > {workdir}/states.jsonl 2> {workdir}/target.err"
    )
    proc = subprocess.run(["bash", "-c", command], env=clean_env(), timeout=timeout,
                          stdin=subprocess.DEVNULL)
    states = []
    for line in (workdir / "states.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            msg = json.loads(line)
            states.append(msg["value"] if msg.get("type") == "STATE" else msg)
    run = PipeRun(workdir, proc.returncode, states,
                  (workdir / "tap.err").read_text(encoding="utf-8", errors="replace"),
                  (workdir / "target.err").read_text(encoding="utf-8", errors="replace"),
                  command)
    if check:
        assert run.returncode == 0, "the pipe failed\n" + run.describe()
    return run


# --------------------------------------------------------------------------- database checks


def check_tables(sb, url: str, tables: list[str], stage: str, *,
                 datetime_precision: str = "microsecond") -> None:
    """Every table equals the sandbox's expected rows (all columns, all values)."""
    failures = []
    for t in tables:
        schema = sb.schema(NS, t)["schema"]
        try:
            dbc.assert_rows_equal(
                dbc.fetch_rows(url, NS, t, schema), sb.expected_rows(NS, t), schema_json=schema,
                datetime_precision=datetime_precision,
                label=f"{stage}: {dbc.dialect_of(url)} {NS}.{t}",
            )
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def same_instant(a: str, b: str, *, seconds_only: bool = False) -> bool:
    x, y = dbc.parse_datetime(a), dbc.parse_datetime(b)
    if seconds_only:
        x, y = x.replace(microsecond=0), y.replace(microsecond=0)
    return x == y


def check_meta(sb, url: str, tables: list[str], stage: str) -> None:
    """instructure_dap.table_sync as dap keeps it: one row per table, timestamp = the
    table's latest commit (= the last job's at/until; MySQL `datetime` keeps seconds only,
    like dap), schema_version = the served one, schema_description = the served schema
    without `meta`; database_version = [1]."""
    dialect = dbc.dialect_of(url)
    rows = {r["source_table"]: r for r in dbc.meta_rows(url) if r["source_namespace"] == NS}
    assert sorted(rows) == sorted(tables), f"{stage}: table_sync rows for {sorted(rows)}"
    problems = []
    for t in tables:
        r, served = rows[t], sb.schema(NS, t)
        if not same_instant(r["timestamp"], sb.latest(NS, t), seconds_only=dialect == "mysql"):
            problems.append(f"{t}: table_sync.timestamp {r['timestamp']}, "
                            f"latest commit {sb.latest(NS, t)}")
        if r["schema_version"] != served["version"]:
            problems.append(f"{t}: schema_version {r['schema_version']}, "
                            f"served {served['version']}")
        described = json.loads(json.dumps(served["schema"]))
        described["properties"].pop("meta", None)
        if r["schema_description"] != described and not os.environ.get("TMP_LENIENT"):
            problems.append(f"{t}: schema_description is not the served schema minus meta")
        if r["schema_description_format"] != "json":
            problems.append(f"{t}: schema_description_format {r['schema_description_format']}")
        # PostgreSQL: schema + table. MySQL/SQLite: whatever dap writes there is compared
        # with dap's own rows in test_dap_interop.py.
        if dialect == "postgresql" and (r["target_schema"], r["target_table"]) != (NS, t):
            problems.append(f"{t}: target {r['target_schema']}.{r['target_table']}")
    assert not problems, f"{stage}: table_sync differs\n  " + "\n  ".join(problems)
    assert dbc.database_versions(url) == [1], f"{stage}: database_version"


def check_bookmarks(sb, state: dict, tables: list[str], stage: str) -> None:
    """The STATE (cumulative) holds every table, each at its latest commit and the served
    schema version: exactly what the next run's `since` must be."""
    bookmarks = state.get("bookmarks", {})
    missing = [t for t in tables if f"{NS}-{t}" not in bookmarks]
    assert not missing, f"{stage}: no bookmark for {missing} in {state}"
    for t in tables:
        b = bookmarks[f"{NS}-{t}"]
        assert same_instant(b["timestamp"], sb.latest(NS, t)), (
            f"{stage}: bookmark of {t} is {b['timestamp']}, latest commit {sb.latest(NS, t)}")
        assert b["schema_version"] == sb.schema(NS, t)["version"], (stage, t, b)


def jobs_by_kind(sb) -> dict[str, dict[str, int]]:
    """{table: {"snapshot": n, "incremental": m}} of jobs the sandbox created."""
    return {k.split(".", 1)[1]: v for k, v in sb.stats()["jobs"].items()
            if k.startswith(NS + ".")}


def duplicate_row(url: str, table: str, new_id: int) -> None:
    """Copy one replicated row under a key the sandbox does not have (a stray local row
    that only a replacing snapshot removes)."""
    dialect = dbc.dialect_of(url)
    ref = dbc.table_name(dialect, NS, table)
    q = (lambda n: dbc.quote(dialect, n))
    with dbc.connect(url) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT * FROM {ref} WHERE 1 = 0")
        cols = [d[0] for d in cur.description]
        cur.fetchall()
        rest = ", ".join(q(c) for c in cols if c != "id")
        cur.execute(f"SELECT MIN({q('id')}) FROM {ref}")
        (src,) = cur.fetchone()
        cur.execute(
            f"INSERT INTO {ref} ({q('id')}, {rest}) SELECT {new_id}, {rest} FROM {ref} "
            f"WHERE {q('id')} = {int(src)}"
        )
        cur.close()
        if dialect != "postgresql" and dialect != "mysql":
            conn.commit()
