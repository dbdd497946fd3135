"""Helpers for the tap tests: run the tap (subprocess or in-process), apply its output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

TAP = str(Path(sys.executable).parent / "tap-canvas-data2")


def tap_config(sb, **extra) -> dict:
    cfg = {
        "client_id": sb.client_id,
        "client_secret": sb.client_secret,
        "base_url": sb.url,
        "jobs_per_minute": 1000,
        "poll_interval_max": 0.05,
    }
    cfg.update(extra)
    return cfg


def run_tap(tmp_path: Path, config: dict, state: dict | None = None,
            catalog: dict | None = None, args: tuple[str, ...] = (),
            env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `tap-canvas-data2` as a real subprocess; return the CompletedProcess."""
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(config))
    cmd = [TAP, "--config", str(cfg_path)]
    if state is not None:
        p = tmp_path / "state.json"
        p.write_text(json.dumps(state))
        cmd += ["--state", str(p)]
    if catalog is not None:
        p = tmp_path / "catalog.json"
        p.write_text(json.dumps(catalog))
        cmd += ["--catalog", str(p)]
    cmd += list(args)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAP_")}
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"tap failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def messages(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_tap_inprocess(config: dict, state: dict | None = None,
                      catalog: dict | None = None) -> list[dict]:
    """Run a sync in-process and return the messages written to stdout."""
    from tap_canvas_data2.tap import TapCanvasData2

    buf = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with redirect_stdout(buf):
        tap = TapCanvasData2(config=config, state=state, catalog=catalog)
        tap.sync_all()
        buf.flush()
    buf.seek(0)
    return messages(buf.read())


def final_state(msgs: list[dict]) -> dict:
    states = [m["value"] for m in msgs if m["type"] == "STATE"]
    return states[-1] if states else {}


class Replica:
    """Applies Singer messages the way the wire contract says a target must."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple, dict]] = {}
        self.keys: dict[str, list[str]] = {}
        self.seen: dict[str, dict[int, set]] = {}

    def apply(self, msgs: list[dict]) -> None:
        for m in msgs:
            typ = m["type"]
            if typ == "SCHEMA":
                self.keys[m["stream"]] = m["key_properties"]
                self.tables.setdefault(m["stream"], {})
            elif typ == "RECORD":
                s = m["stream"]
                rec = m["record"]
                pk = tuple(rec[k] for k in self.keys[s])
                if rec.get("_sdc_deleted_at"):
                    self.tables[s].pop(pk, None)
                else:
                    row = {k: v for k, v in rec.items() if k != "_sdc_deleted_at"}
                    self.tables[s][pk] = row
                if "version" in m:
                    self.seen.setdefault(s, {}).setdefault(m["version"], set()).add(pk)
            elif typ == "ACTIVATE_VERSION":
                s = m["stream"]
                keep = self.seen.get(s, {}).get(m["version"], set())
                self.tables[s] = {k: v for k, v in self.tables.get(s, {}).items() if k in keep}

    def rows(self, stream: str) -> dict[tuple, dict]:
        return self.tables.get(stream, {})


def expected(sb, namespace: str, table: str, keys: list[str]) -> dict[tuple, dict]:
    return {tuple(r[k] for k in keys): r for r in sb.expected_rows(namespace, table)}
