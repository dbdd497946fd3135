"""Load speed of target-dap-sql: python -m tests.target.speed_check [rows] [dialect ...]

Generates a snapshot of a 46-column table (ints, strings, timestamps, enums, booleans,
floats, a nested object, NULLs) as Singer messages, pipes it into the real
`target-dap-sql` subprocess and prints rows/s per dialect (fresh database each). Also
prints the time of an upsert pass (the same rows again, staging + merge path).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.databases import database
from tests.target.helpers import TARGET

STREAM = "canvas-speed"


def schema() -> dict:
    props: dict = {"id": {"type": "integer", "format": "int64"}}
    for i in range(10):
        props[f"int_{i}"] = {"type": ["integer", "null"], "format": "int64"}
    for i in range(13):
        props[f"str_{i}"] = {"type": ["string", "null"], "maxLength": 255}
    for i in range(6):
        props[f"ts_{i}"] = {"type": ["string", "null"], "format": "date-time"}
    for i in range(4):
        props[f"state_{i}"] = {"type": "string", "enum": ["__dap_unspecified__", "active",
                                                           "deleted", "pending"]}
    for i in range(5):
        props[f"flag_{i}"] = {"type": ["boolean", "null"]}
    for i in range(5):
        props[f"num_{i}"] = {"type": ["number", "null"], "format": "float64"}
    props["text_0"] = {"type": ["string", "null"]}
    props["settings"] = {"type": ["object", "null"], "additionalProperties": False,
                         "properties": {"a": {"type": ["string", "null"]}}}
    props["_sdc_deleted_at"] = {"type": ["string", "null"], "format": "date-time"}
    assert len(props) == 47  # 46 columns + _sdc_deleted_at
    return {"type": "SCHEMA", "stream": STREAM, "key_properties": ["id"],
            "schema": {"type": "object", "properties": props, "required": ["id"],
                       "x-dap": {"namespace": "canvas", "table": "speed", "schema_version": 1,
                                 "schema": {"title": "speed"}}}}


def record(i: int) -> dict:
    r: dict = {"id": i}
    for k in range(10):
        r[f"int_{k}"] = None if (i + k) % 7 == 0 else i * 31 + k
    for k in range(13):
        r[f"str_{k}"] = None if (i + k) % 9 == 0 else f"value {k} of row {i} with some text"
    for k in range(6):
        r[f"ts_{k}"] = f"2024-0{k + 1}-1{k}T0{k}:1{k}:2{k}.{i % 1000000:06d}Z"
    for k in range(4):
        r[f"state_{k}"] = ("active", "deleted", "pending")[(i + k) % 3]
    for k in range(5):
        r[f"flag_{k}"] = None if k == 4 else (i + k) % 2 == 0
    for k in range(5):
        r[f"num_{k}"] = i / (k + 3)
    r["text_0"] = "a longer text value, " * 3
    r["settings"] = {"a": f"s{i}"} if i % 3 else None
    return r


def make_input(path: Path, rows: int, version: int = 1) -> None:
    with open(path, "w") as fh:
        fh.write(json.dumps(schema()) + "\n")
        for i in range(rows):
            fh.write(json.dumps({"type": "RECORD", "stream": STREAM, "record": record(i),
                                 "version": version}) + "\n")
        fh.write(json.dumps({"type": "ACTIVATE_VERSION", "stream": STREAM,
                             "version": version}) + "\n")
        fh.write(json.dumps({"type": "STATE", "value": {"bookmarks": {STREAM: {
            "timestamp": "2024-01-01T00:00:00Z", "schema_version": 1}}}}) + "\n")


def run(url: str, path: Path, tmp: Path) -> float:
    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps({"connection_string": url}))
    t0 = time.monotonic()
    with open(path, "rb") as fh:
        res = subprocess.run([TARGET, "--config", str(cfg)], stdin=fh, capture_output=True)
    elapsed = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(res.stderr.decode()[-2000:])
    return elapsed


def main(argv: list[str]) -> dict[str, tuple[float, float]]:
    rows = int(argv[0]) if argv else 100_000
    dialects = argv[1:] or ["postgresql"]
    results = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        path = tmp / "input.jsonl"
        make_input(path, rows)
        size = path.stat().st_size / 1e6
        for dialect in dialects:
            with database(dialect, tmpdir) as url:
                first = run(url, path, tmp)
                again = run(url, path, tmp)
            results[dialect] = (rows / first, rows / again)
            print(f"{dialect:<11} {rows} rows x 46 columns ({size:.0f} MB): initial snapshot "
                  f"{first:.2f} s = {rows / first:,.0f} rows/s; re-snapshot (upsert) "
                  f"{again:.2f} s = {rows / again:,.0f} rows/s", flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
