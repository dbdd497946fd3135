"""Shared pieces of the reliability tests: the real `tap | target` pipe as two processes.

`Pipe` starts `tap-canvas-data2 --config c.json [--state s.json]` with its stdout connected
to `target-dap-sql --config t.json` (exactly what the shell pipe does), each stderr to its
own file, the target's stdout (the STATE lines) to a file. Tests wait for it, or kill one
of the two processes with SIGKILL at a chosen moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import db_compare as dbc

BIN = Path(sys.executable).parent
TAP = str(BIN / "tap-canvas-data2")
TARGET = str(BIN / "target-dap-sql")

#: API client settings that keep fault recovery fast (the defaults wait like production).
FAST_TAP = {"jobs_per_minute": 0, "max_retries": 4, "backoff_max": 0.2,
            "poll_interval_max": 0.2}


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without settings that could leak into a child process."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DAP_", "TAP_CANVAS_DATA2_", "TARGET_DAP_SQL_", "MELTANO_",
                                "LOGLEVEL", "SINGER_SDK_"))}
    env.update(extra)
    return env


def tap_config(sb, **extra: Any) -> dict[str, Any]:
    return {"base_url": sb.url, "client_id": sb.client_id, "client_secret": sb.client_secret,
            **FAST_TAP, **extra}


def last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@dataclass
class PipeResult:
    tap_rc: int | None
    target_rc: int | None
    states: list[dict]
    tap_stderr: str
    target_stderr: str
    seconds: float
    command: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.tap_rc == 0 and self.target_rc == 0

    @property
    def last_state(self) -> dict | None:
        return self.states[-1] if self.states else None

    @property
    def output(self) -> str:
        return self.tap_stderr + "\n" + self.target_stderr

    def describe(self, limit: int = 4000) -> str:
        return (f"$ {self.command}\ntap exit {self.tap_rc}, target exit {self.target_rc}, "
                f"{self.seconds:.1f} s, {len(self.states)} STATE line(s)\n"
                f"--- tap stderr (tail) ---\n{self.tap_stderr[-limit:]}\n"
                f"--- target stderr (tail) ---\n{self.target_stderr[-limit:]}")


class Pipe:
    """One running `tap | target` pipe."""

    def __init__(self, workdir: Path, tap_cfg: dict, target_cfg: dict,
                 state: dict | None = None, env: dict | None = None,
                 tap_args: tuple[str, ...] = ()) -> None:
        self.dir = workdir / f"run-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        c, t = self.dir / "c.json", self.dir / "t.json"
        c.write_text(json.dumps(tap_cfg))
        t.write_text(json.dumps(target_cfg))
        tap_cmd = [TAP, "--config", str(c), *tap_args]
        if state is not None:
            s = self.dir / "s.json"
            s.write_text(json.dumps(state))
            tap_cmd += ["--state", str(s)]
        self.command = " ".join(tap_cmd) + f" | {TARGET} --config {t}"
        env = env if env is not None else clean_env()
        self._tap_err = open(self.dir / "tap.err", "wb")  # noqa: SIM115
        self._tgt_err = open(self.dir / "target.err", "wb")  # noqa: SIM115
        self._tgt_out = open(self.dir / "target.out", "wb")  # noqa: SIM115
        self.started = time.monotonic()
        self.tap = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=self._tap_err,
                                    stdin=subprocess.DEVNULL, env=env, cwd=self.dir)
        self.target = subprocess.Popen([TARGET, "--config", str(t)], stdin=self.tap.stdout,
                                       stdout=self._tgt_out, stderr=self._tgt_err, env=env,
                                       cwd=self.dir)
        assert self.tap.stdout is not None
        self.tap.stdout.close()  # the target holds the read end, as in a shell pipe

    def kill(self, which: str) -> None:
        proc = self.tap if which == "tap" else self.target
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)

    def running(self) -> bool:
        return self.tap.poll() is None or self.target.poll() is None

    def wait(self, timeout: float = 300) -> PipeResult:
        deadline = time.monotonic() + timeout
        try:
            for proc in (self.tap, self.target):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill("tap")
            self.kill("target")
            self.tap.wait()
            self.target.wait()
            raise AssertionError(f"pipe did not finish in {timeout} s:\n"
                                 f"{self.result().describe()}") from None
        return self.result()

    def result(self) -> PipeResult:
        for f in (self._tap_err, self._tgt_err, self._tgt_out):
            f.flush()
        states = []
        for line in (self.dir / "target.out").read_text(errors="replace").splitlines():
            line = line.strip()
            if line:
                states.append(json.loads(line))
        return PipeResult(
            tap_rc=self.tap.poll(), target_rc=self.target.poll(), states=states,
            tap_stderr=(self.dir / "tap.err").read_text(errors="replace"),
            target_stderr=(self.dir / "target.err").read_text(errors="replace"),
            seconds=time.monotonic() - self.started, command=self.command)

    def close(self) -> None:
        for f in (self._tap_err, self._tgt_err, self._tgt_out):
            f.close()


def run_pipe(workdir: Path, tap_cfg: dict, target_cfg: dict, state: dict | None = None,
             *, timeout: float = 300, env: dict | None = None,
             tap_args: tuple[str, ...] = ()) -> PipeResult:
    pipe = Pipe(workdir, tap_cfg, target_cfg, state, env=env, tap_args=tap_args)
    try:
        return pipe.wait(timeout)
    finally:
        pipe.close()


def assert_table_equals_sandbox(url: str, sb, namespace: str, table: str, label: str = "",
                                **kw: Any) -> None:
    """The replicated table equals the sandbox's current rows (no missing, extra or changed)."""
    schema = sb.schema(namespace, table)
    actual = dbc.fetch_rows(url, namespace, table, schema_json=schema)
    dt_precision = "microsecond"
    if dbc.dialect_of(url) == "mysql":
        dt_precision = kw.pop("datetime_precision", "microsecond")
    dbc.assert_rows_equal(actual, sb.expected_rows(namespace, table), schema_json=schema,
                          datetime_precision=dt_precision, label=label or f"{namespace}.{table}",
                          **kw)


def assert_one_line_error(result: PipeResult, *words: str, who: str = "tap") -> str:
    """The failing process ends its stderr with one error line (no traceback) containing
    every word (case-insensitive); returns that line."""
    err = result.tap_stderr if who == "tap" else result.target_stderr
    line = last_line(err)
    assert "Traceback" not in err, f"traceback in {who} stderr:\n{result.describe()}"
    for w in words:
        assert w.lower() in line.lower(), f"{w!r} not in last {who} line {line!r}\n" \
                                          f"{result.describe()}"
    return line
