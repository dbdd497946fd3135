"""Run `tap-canvas-data2 | target-dap-sql` as two real processes joined by a pipe.

This is what `canvas-data2 initdb/syncdb/demo` do under the hood: the same Singer pair a
user would run from a shell or from Meltano, so the two processes use both cores (the tap
downloads and parses while the target loads).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PipelineResult:
    """Exit codes of both processes and the last STATE the target emitted."""

    tap_returncode: int
    target_returncode: int
    state: dict | None

    @property
    def ok(self) -> bool:
        return self.tap_returncode == 0 and self.target_returncode == 0


def _executable(name: str) -> str:
    """Find a console script next to the running interpreter first (a venv), then on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"error: {name} is not installed; run: pip install -e .")
    return found


@contextmanager
def private_dir() -> Iterator[Path]:
    """A temporary directory readable only by this user (config files hold secrets)."""
    path = Path(tempfile.mkdtemp(prefix="canvas-data2-"))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_json(path: Path, data: dict) -> Path:
    """Write JSON with owner-only permissions."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return path


def run_pipeline(
    tap_config: dict,
    target_config: dict,
    state: dict | None = None,
    env: dict[str, str] | None = None,
) -> PipelineResult:
    """Run the tap into the target; stderr of both goes to ours (progress and summary).

    The target's stdout carries the STATE lines it emits after each commit; the last one is
    returned (it is also what Meltano would store).
    """
    with private_dir() as tmp:
        tap_cmd = [_executable("tap-canvas-data2"),
                   "--config", str(write_json(tmp / "tap.json", tap_config))]
        if state:
            tap_cmd += ["--state", str(write_json(tmp / "state.json", state))]
        target_cmd = [
            _executable("target-dap-sql"),
            "--config", str(write_json(tmp / "target.json", target_config)),
        ]
        run_env = {**os.environ, **(env or {})}
        tap = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, env=run_env)
        target = subprocess.Popen(
            target_cmd, stdin=tap.stdout, stdout=subprocess.PIPE, env=run_env, text=True
        )
        assert tap.stdout is not None and target.stdout is not None
        tap.stdout.close()  # the target owns the read end now; lets the tap see SIGPIPE
        last_state = None
        for line in target.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("type") == "STATE":
                last_state = message.get("value")
            elif isinstance(message, dict) and "bookmarks" in message:
                last_state = message
        target_rc = target.wait()
        tap_rc = tap.wait()
        return PipelineResult(tap_rc, target_rc, last_state)
