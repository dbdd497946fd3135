"""Helpers for target tests: run the real `target-dap-sql` subprocess, read tables back."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid as uuidlib
from decimal import Decimal
from pathlib import Path
from typing import Any

from target_dap_sql.connection import parse_connection_string

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
TARGET = str(Path(sys.executable).parent / "target-dap-sql")


def run_target(url: str, tmp_path: Path, *inputs: str | bytes, config: dict | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run target-dap-sql with stdin = golden file name(s) or raw text; returns the result."""
    cfg = {"connection_string": url, **(config or {})}
    cfg_path = tmp_path / f"config-{uuidlib.uuid4().hex[:6]}.json"
    cfg_path.write_text(json.dumps(cfg))
    data = b""
    for item in inputs:
        if isinstance(item, bytes):
            data += item
        elif "{" not in item and (item.endswith(".jsonl") or (GOLDEN / f"{item}.jsonl").exists()):
            name = item if item.endswith(".jsonl") else f"{item}.jsonl"
            data += (GOLDEN / name).read_bytes()
        else:
            data += item.encode()
    env = dict(os.environ)
    env.pop("DAP_CONNECTION_STRING", None)
    return subprocess.run([TARGET, "--config", str(cfg_path)], input=data, capture_output=True,
                          timeout=timeout, env=env, cwd=tmp_path)


def golden_messages(name: str) -> list[dict]:
    """Parsed messages of a golden file (NaN accepted)."""
    return [json.loads(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines()
            if line.strip()]


def model(*names: str) -> dict[Any, dict]:
    """Reference semantics: the rows a correct target leaves after the given golden files."""
    table: dict[Any, dict] = {}
    versions: dict[Any, Any] = {}
    for name in names:
        for m in golden_messages(name):
            if m["type"] == "RECORD":
                r = m["record"]
                if r.get("_sdc_deleted_at"):
                    table.pop(r["id"], None)
                    versions.pop(r["id"], None)
                else:
                    table[r["id"]] = dict(r)
                    versions[r["id"]] = m.get("version")
            elif m["type"] == "ACTIVATE_VERSION":
                for k in [k for k, v in versions.items() if v != m["version"]]:
                    table.pop(k, None)
                    versions.pop(k, None)
    return table


class DB:
    """Minimal real-database reader for assertions."""

    def __init__(self, url: str) -> None:
        self.info = parse_connection_string(url)
        self.dialect = self.info.dialect
        if self.dialect == "postgresql":
            import psycopg2
            self.conn = psycopg2.connect(host=self.info.host, port=self.info.port,
                                         dbname=self.info.database, user=self.info.user)
            self.conn.autocommit = True
        elif self.dialect == "mysql":
            import mysql.connector
            self.conn = mysql.connector.connect(
                host=self.info.host, port=self.info.port, user=self.info.user or "root",
                password=self.info.password, database=self.info.database, autocommit=True,
                sql_mode="ANSI_QUOTES", time_zone="+00:00")
        else:
            import sqlite3
            self.conn = sqlite3.connect(self.info.path)

    def close(self) -> None:
        self.conn.close()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        cur.close()
        return rows

    def ref(self, ns: str, table: str) -> str:
        return f'"{ns}"."{table}"' if self.dialect == "postgresql" else f'"{ns}__{table}"'

    def meta_ref(self, which: str) -> str:
        return (f'"instructure_dap"."{which}"' if self.dialect == "postgresql"
                else f'"instructure_dap__{which}"')

    def exists(self, ns: str, table: str) -> bool:
        if self.dialect == "postgresql":
            return self.query("SELECT to_regclass(%s)", (self.ref(ns, table),))[0][0] is not None
        if self.dialect == "mysql":
            return bool(self.query("SELECT 1 FROM information_schema.tables WHERE table_schema ="
                                   " DATABASE() AND table_name = %s", (f"{ns}__{table}",)))
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE name = ?", (f"{ns}__{table}",)))

    def columns(self, ns: str, table: str) -> list[str]:
        if self.dialect == "sqlite":
            return [r[1] for r in self.query(f'PRAGMA table_info("{ns}__{table}")')]
        if self.dialect == "mysql":
            return [r[0] for r in self.query(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                "DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (f"{ns}__{table}",))]
        return [r[0] for r in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND "
            "table_name = %s ORDER BY ordinal_position", (ns, table))]

    def rows(self, ns: str, table: str, schema_props: dict) -> dict[Any, dict]:
        """All rows, values normalised with the Singer schema so dialects compare equal."""
        cols = self.columns(ns, table)
        select = []
        for c in cols:
            prop = schema_props.get(c, {})
            if self.dialect == "postgresql" and prop.get("items", {}).get("enum"):
                select.append(f'"{c}"::text[]')
            else:
                select.append(f'"{c}"')
        out = {}
        for r in self.query(f"SELECT {', '.join(select)} FROM {self.ref(ns, table)}"):
            rec = {c: normalise(v, schema_props.get(c, {})) for c, v in zip(cols, r, strict=False)}
            out[rec["id"]] = rec
        return out

    def table_sync(self) -> list[dict]:
        names = ["source_namespace", "source_table", "timestamp", "schema_version",
                 "target_schema", "target_table", "schema_description_format",
                 "schema_description"]
        rows = self.query(f"SELECT {', '.join(chr(34) + n + chr(34) for n in names)} "
                          f"FROM {self.meta_ref('table_sync')} ORDER BY \"id\"")
        return [dict(zip(names, r, strict=False)) for r in rows]


def _types(prop: dict) -> list[str]:
    t = prop.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def normalise(value: Any, prop: dict) -> Any:
    """DB value -> the JSON-ish form of the golden records (per schema property)."""
    if value is None:
        return None
    types = _types(prop)
    fmt = prop.get("format")
    if isinstance(value, (bytes, bytearray)) and fmt == "uuid":
        return str(uuidlib.UUID(bytes=bytes(value)))
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if "boolean" in types:
        return bool(value)
    if fmt == "date-time":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "").replace(" ", "T"))
        return value
    if fmt == "date":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    if "multipleOf" in prop:
        return Decimal(str(value))
    if "number" in types:
        return float(value)
    if "object" in types or "array" in types:
        return json.loads(value) if isinstance(value, str) else value
    return value


def expected_rows(records: dict[Any, dict], schema_props: dict) -> dict[Any, dict]:
    """Golden records normalised like :func:`normalise` (strings parsed as the DB would)."""
    out = {}
    for key, rec in records.items():
        row = {}
        for c, prop in schema_props.items():
            if c.startswith("_sdc_"):
                continue
            v = rec.get(c)
            if v is None:
                row[c] = None
            elif prop.get("format") == "date-time":
                row[c] = dt.datetime.fromisoformat(v.replace("Z", ""))
            elif prop.get("format") == "date":
                row[c] = dt.date.fromisoformat(v)
            elif "multipleOf" in prop:
                row[c] = Decimal(str(v))
            elif "number" in _types(prop):
                row[c] = float(v)
            else:
                row[c] = v
        out[key] = row
    return out


def schema_props(name: str, index: int = 0) -> dict:
    """Properties of the index-th SCHEMA message of a golden file."""
    schemas = [m for m in golden_messages(name) if m["type"] == "SCHEMA"]
    return schemas[index]["schema"]["properties"]


def state_lines(result: subprocess.CompletedProcess) -> list[dict]:
    """STATE values printed on stdout."""
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single `target-dap-sql: error:` line of stderr (asserts there is exactly one)."""
    lines = [ln for ln in result.stderr.decode().splitlines() if "error:" in ln]
    assert len(lines) == 1, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    return lines[0]
