"""Run the official DAP client (`instructure-dap-client`, CLI `dap`) from tests.

The official client pins its own dependency versions (asyncpg, aiomysql, PyMySQL,
cryptography, aiohttp, ...), which differ from ours, so it lives in a virtual
environment of its own, outside the repository, shared by every clone and every
test run on this machine:

    ${DAP_CLIENT_VENV:-${XDG_CACHE_HOME:-~/.cache}/tap-canvas-data2/dap-<version>-venv}

made with `python3 -m venv` and `pip install "instructure-dap-client[postgresql,mysql]==<version>"`.
It is reused when it already imports; its creation is serialized with a lock file, so
several tests (or several pytest processes) may ask for it at the same time. A venv
that is half made (no completion marker) is removed and made again.

`run_dap()` runs the CLI with tracking disabled (`--no-tracking` and `DAP_TRACKING=false`:
otherwise the client posts usage analytics to pendo.io after every command, which costs
up to its 20 s timeout when there is no network) and in non-interactive mode (plain
output on stdout, logs on stderr). The client needs nothing else from the network:
no update checks, no telemetry besides that one. Mind that it polls an unfinished job
every 5 s; the sandbox finishes jobs at once unless told otherwise.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DAP_VERSION = "2.3.1"
DAP_REQUIREMENT = f"instructure-dap-client[postgresql,mysql]=={DAP_VERSION}"
# The modules that must import for the venv to count as complete.
_PROBE = (
    "import dap, dap.__main__, asyncpg, aiomysql, pymysql, tsv.helper; "
    f"assert dap.__version__ == {DAP_VERSION!r}, dap.__version__"
)
_MARKER = ".tap-canvas-data2-complete"


class DapClientUnavailable(RuntimeError):
    """The official client's virtual environment could not be created or does not work."""


def dap_venv_dir() -> Path:
    """Where the official client's venv lives (override with DAP_CLIENT_VENV)."""
    override = os.environ.get("DAP_CLIENT_VENV")
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tap-canvas-data2" / f"dap-{DAP_VERSION}-venv"


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _venv_works(venv: Path) -> bool:
    python = _bin(venv, "python")
    if not (venv / _MARKER).exists() or not python.exists() or not _bin(venv, "dap").exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    return probe.returncode == 0


def _create(venv: Path) -> None:
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base_python = os.environ.get("DAP_CLIENT_PYTHON") or shutil.which("python3") or sys.executable
    steps = [
        [base_python, "-m", "venv", str(venv)],
        [
            str(_bin(venv, "python")), "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "-q", DAP_REQUIREMENT,
        ],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise DapClientUnavailable(
                f"cannot create the official DAP client venv at {venv}:\n"
                f"$ {' '.join(cmd)}\nexit {proc.returncode}\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
    python = _bin(venv, "python")
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
    if probe.returncode != 0:
        raise DapClientUnavailable(
            f"the official DAP client venv at {venv} was installed but does not import:\n"
            f"{probe.stderr[-4000:]}"
        )
    (venv / _MARKER).write_text(f"{DAP_REQUIREMENT}\n{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")


_checked: dict[Path, Path] = {}


def ensure_dap() -> Path:
    """Return the path of the `dap` executable, creating its venv first if needed.

    Raises DapClientUnavailable (with pip's output) when the venv cannot be made:
    tests must fail on that, never skip.
    """
    venv = dap_venv_dir()
    if venv in _checked:
        return _checked[venv]
    if not _venv_works(venv):
        venv.parent.mkdir(parents=True, exist_ok=True)
        lock_path = venv.parent / (venv.name + ".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process builds it
            try:
                if not _venv_works(venv):  # somebody else may have made it meanwhile
                    _create(venv)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    dap = _bin(venv, "dap")
    _checked[venv] = dap
    return dap


def dap_env(
    *, connection_string: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment `dap` runs with: ours minus DAP_* settings, tracking off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    env["DAP_TRACKING"] = "false"
    env.pop("PYTHONPATH", None)  # keep our packages out of the client's interpreter
    env.pop("VIRTUAL_ENV", None)
    if connection_string is not None:
        env["DAP_CONNECTION_STRING"] = connection_string
    if extra:
        env.update(extra)
    return env


def run_dap(
    args: Sequence[str],
    *,
    url: str,
    client_id: str,
    client_secret: str,
    connection_string: str | None = None,
    timeout: float = 300,
    cwd: str | os.PathLike[str] | None = None,
    loglevel: str = "info",
    check: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `dap <global options> <args>` against `url`; return the finished process.

    Global options (`--base-url`, `--client-id`, `--client-secret`, `--no-tracking`,
    `--non-interactive`, `--loglevel`) go before the command name; `args` is the
    command and its own options, e.g. ["initdb", "--namespace", "canvas", "--table", "all"].
    The connection string is passed as DAP_CONNECTION_STRING (every DB command reads it).
    With check=True a non-zero exit raises AssertionError showing stdout and stderr.
    """
    dap = ensure_dap()
    cmd = [
        str(dap),
        "--base-url", url,
        "--client-id", client_id,
        "--client-secret", client_secret,
        "--no-tracking",
        "--non-interactive",
        "--loglevel", loglevel,
        *args,
    ]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=dap_env(connection_string=connection_string, extra=env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(describe(proc))
    return proc


def describe(proc: subprocess.CompletedProcess[str], limit: int = 6000) -> str:
    """A readable account of a finished `dap` run (secrets masked) for assertion messages."""
    shown = list(proc.args)
    if "--client-secret" in shown:
        i = shown.index("--client-secret")
        if i + 1 < len(shown):
            shown[i + 1] = "***"
    return (
        f"$ {' '.join(map(str, shown))}\nexit code {proc.returncode}\n"
        f"--- stdout ---\n{(proc.stdout or '')[-limit:]}\n"
        f"--- stderr ---\n{(proc.stderr or '')[-limit:]}"
    )


if __name__ == "__main__":  # `python -m tests.helpers.dap_cli` prepares the venv (CI)
    started = time.monotonic()
    path = ensure_dap()
    print(f"{path} ready in {time.monotonic() - started:.1f}s")
