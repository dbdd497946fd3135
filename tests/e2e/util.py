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
             *, check: bool = True, timeout: float = 300, target: str | None = None,
             env: dict[str, str] | None = None) -> PipeRun:
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
    proc = subprocess.run(["bash", "-c", command], env=clean_env(**(env or {})), timeout=timeout,
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


def check_meta(sb, url: str, tables: list[str], stage: str,
               later: list[str] | None = None) -> None:
    """instructure_dap.table_sync as dap keeps it: one row per table, timestamp = the
    table's latest commit (= the last job's at/until; MySQL `datetime` keeps seconds only,
    like dap), schema_version = the served one, schema_description = the served schema
    without `meta` (only `properties.meta`: dap keeps `required` as served);
    database_version = [1].

    With `later` (a list), schema_description mismatches are appended there instead of
    failing now (a wrong description alone does not break the data path): the test asserts
    `later` is empty at its end, after every data check has run."""
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
        if r["schema_description"] != described:
            found = describe_json_difference(r["schema_description"], described)
            message = (f"{dbc.dialect_of(url)} table_sync.schema_description of {t} is not "
                       f"the served schema minus properties.meta: {found}")
            if later is None:
                problems.append(f"{stage}: {message}")
            else:
                later.append(message)
        if r["schema_description_format"] != "json":
            problems.append(f"{t}: schema_description_format {r['schema_description_format']}")
        # PostgreSQL: schema + table. MySQL/SQLite: whatever dap writes there is compared
        # with dap's own rows in test_dap_interop.py.
        if dialect == "postgresql" and (r["target_schema"], r["target_table"]) != (NS, t):
            problems.append(f"{t}: target {r['target_schema']}.{r['target_table']}")
    assert not problems, f"{stage}: table_sync differs\n  " + "\n  ".join(problems)
    assert dbc.database_versions(url) == [1], f"{stage}: database_version"


def describe_json_difference(actual: Any, expected: Any, path: str = "$") -> str:
    """The first path where two JSON values differ, with both values (short)."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        for k in sorted(set(actual) | set(expected), key=str):
            if k not in actual or k not in expected or actual[k] != expected[k]:
                if k in actual and k in expected:
                    return describe_json_difference(actual[k], expected[k], f"{path}.{k}")
                return (f"{path}.{k}: stored={str(actual.get(k, '<absent>'))[:150]} "
                        f"served={str(expected.get(k, '<absent>'))[:150]}")
    return f"{path}: stored={str(actual)[:150]} served={str(expected)[:150]}"


def assert_nothing_later(later: list[str]) -> None:
    """Fail with the deferred findings of check_meta (each distinct message once)."""
    assert not later, "deferred table_sync findings:\n  " + "\n  ".join(dict.fromkeys(later))


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

    def q(name: str) -> str:
        return dbc.quote(dialect, name)

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


# --------------------------------------------------------------------------- out-of-process sandbox


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedSandbox:
    """`dap-sandbox serve` as a child process, with the parts of the Sandbox API the checks
    above use (expected_rows, latest, schema, stats), over its HTTP endpoints. Changes are
    made with the `dap-sandbox advance|bump-schema|reload --url ...` commands, as a user would."""

    def __init__(self, workdir: Path, *, seed: int, rows: dict[str, int],
                 rows_per_object: int = ROWS_PER_OBJECT) -> None:
        import time

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ready = workdir / "sandbox-ready.json"
        self._log = open(workdir / "sandbox.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [exe("dap-sandbox"), "serve", "--port", str(self.port), "--seed", str(seed),
             "--rows", *[f"{t}={n}" for t, n in rows.items()],
             "--rows-per-object", str(rows_per_object), "--ready-file", str(ready)],
            stdout=self._log, stderr=subprocess.STDOUT, env=clean_env(),
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("dap-sandbox serve did not start:\n"
                                     + (workdir / "sandbox.log").read_text())
            time.sleep(0.05)
        env = json.loads(ready.read_text())
        assert env["DAP_API_URL"] == self.url, env
        self.client_id, self.client_secret = env["DAP_CLIENT_ID"], env["DAP_CLIENT_SECRET"]
        self._token: str | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> ServedSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the CLI a user drives it with
    def cli(self, command: str, table: str, *args: str) -> dict:
        proc = subprocess.run([exe("dap-sandbox"), command, "--url", self.url, "--table", table,
                               *args], capture_output=True, text=True, env=clean_env(),
                              timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, describe(proc)
        return json.loads(proc.stdout)

    def advance(self, namespace: str, table: str, inserts: int = 0, updates: int = 0,
                deletes: int = 0) -> str:
        assert namespace == NS
        return self.cli("advance", table, "--inserts", str(inserts), "--updates", str(updates),
                        "--deletes", str(deletes))["ts"]

    # --- reading it back (the /_sandbox admin endpoints and the DAP API itself)
    def _get(self, path: str, **params: str):
        import requests

        resp = requests.get(f"{self.url}{path}", params=params, timeout=60)
        resp.raise_for_status()
        return resp

    def expected_rows(self, namespace: str, table: str):
        text = self._get("/_sandbox/expected", namespace=namespace, table=table).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def latest(self, namespace: str, table: str) -> str:
        return self._get("/_sandbox/state").json()[f"{namespace}.{table}"]["latest"]

    def stats(self) -> dict:
        return self._get("/_sandbox/stats").json()

    def schema(self, namespace: str, table: str) -> dict:
        import base64

        import requests

        if self._token is None:
            basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            resp = requests.post(f"{self.url}/ids/auth/login",
                                 data={"grant_type": "client_credentials"},
                                 headers={"Authorization": f"Basic {basic}"}, timeout=60)
            resp.raise_for_status()
            self._token = resp.json()["access_token"]
        resp = requests.get(f"{self.url}/dap/query/{namespace}/table/{table}/schema",
                            headers={"Authorization": f"Bearer {self._token}"}, timeout=60)
        resp.raise_for_status()
        return resp.json()
