#!/usr/bin/env python
"""Benchmark: `tap-canvas-data2 | target-dap-sql` against the official `dap` client.

    .venv/bin/python benchmarks/run.py [--rows 1000000] [--small 100000]
                                       [--dbs postgresql,mysql] [--skip-dap]

One run does, for a sandbox `canvas.submissions` table of --rows rows (46 columns):

1. starts `dap-sandbox serve` (a separate process) and pre-generates the snapshot's objects
   before anything is timed;
2. for each database (fresh databases, dropped at the end unless --keep):
   a. `dap initdb --table submissions` into one database, `tap | target` into another
      (timed; peak RSS of each process with /usr/bin/time -v, or psutil polling);
   b. once per DB kind (first DB only): sandbox advance (--updates/--inserts/--deletes),
      then the incremental job's objects are pre-generated (an API job with the same
      `since`; its generation time is printed separately);
   c. `dap syncdb` on dap's database vs our incremental run (tap with the target's last
      STATE) on ours; each on the database that had its own initial load;
   d. checks that dap's database and ours hold the same rows (count + per-column,
      order-independent checksums keyed by the primary key) after both steps;
3. the limit: PostgreSQL `COPY` of the same decompressed snapshot TSV into an identical empty
   table;
4. the memory slope: our first sync of a --small-row table (a second sandbox) per database;
5. prints a table and writes benchmarks/results.md (date, machine, server versions).

`--rows 20000 --small 5000` is the quick mode (well under 2 minutes).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.dap_cli import dap_env, ensure_dap  # noqa: E402

BIN = Path(sys.executable).parent
NS, TABLE = "canvas", "submissions"
PG_ADMIN = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MY_ADMIN = os.environ.get("MYSQL_ADMIN_URL", "mysql://root@127.0.0.1:3306/mysql")
GNU_TIME = "/usr/bin/time"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ processes
@dataclass
class Proc:
    """One finished process: wall seconds, peak RSS (MB), cpu seconds, exit code."""

    name: str
    rc: int = 0
    wall: float = 0.0
    rss_mb: float = 0.0
    cpu: float = 0.0
    stderr: str = ""


@dataclass
class Run:
    """A timed step (one or two processes)."""

    label: str
    wall: float
    rows: int
    procs: list[Proc] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.rows / self.wall if self.wall else 0.0

    def rss(self, name: str) -> float | None:
        for p in self.procs:
            if p.name == name:
                return p.rss_mb
        return None


def _timed_cmd(cmd: list[str], out_file: Path) -> list[str]:
    if os.path.exists(GNU_TIME):
        return [GNU_TIME, "-v", "-o", str(out_file), *cmd]
    return cmd


def _read_time(out_file: Path, proc: Proc) -> None:
    try:
        text = out_file.read_text()
    except OSError:
        return
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            proc.rss_mb = int(line.rsplit(":", 1)[1]) / 1024
        elif line.startswith("User time (seconds):") or line.startswith("System time (seconds):"):
            proc.cpu += float(line.rsplit(":", 1)[1])


class _RssPoller(threading.Thread):
    """psutil fallback when /usr/bin/time is missing: poll RSS of a pid tree."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        import psutil

        try:
            p = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, p.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)


def run_pipeline(cmds: list[tuple[str, list[str]]], *, env: dict[str, str], workdir: Path,
                 stdout_path: Path | None = None,
                 timeout: float = 3600) -> tuple[float, list[Proc]]:
    """Run cmd1 | cmd2 | ... ; return wall seconds and one Proc per command."""
    procs: list[subprocess.Popen] = []
    infos: list[Proc] = []
    err_files = []
    time_files = []
    pollers = []
    started = time.monotonic()
    prev = subprocess.DEVNULL
    final_out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    for i, (name, cmd) in enumerate(cmds):
        tf = workdir / f"{name}.time"
        tf.unlink(missing_ok=True)
        ef = open(workdir / f"{name}.stderr", "wb")
        last = i == len(cmds) - 1
        p = subprocess.Popen(_timed_cmd(cmd, tf), stdin=prev,
                             stdout=final_out if last else subprocess.PIPE, stderr=ef, env=env,
                             start_new_session=True)
        if prev not in (subprocess.DEVNULL, None):
            prev.close()  # type: ignore[union-attr]
        prev = p.stdout if not last else None
        procs.append(p)
        infos.append(Proc(name))
        err_files.append(ef)
        time_files.append(tf)
        if not os.path.exists(GNU_TIME):
            poller = _RssPoller(p.pid)
            poller.start()
            pollers.append(poller)
    ends = [0.0] * len(procs)
    deadline = started + timeout
    pending = set(range(len(procs)))
    try:
        _wait_all(procs, pending, ends, deadline, cmds)
    except BaseException:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # the command and /usr/bin/time
                except OSError:
                    p.kill()
        raise
    wall = time.monotonic() - started
    if stdout_path:
        final_out.close()  # type: ignore[union-attr]
    for i, info in enumerate(infos):
        err_files[i].close()
        info.rc = procs[i].returncode
        info.wall = ends[i] - started
        info.stderr = (workdir / f"{info.name}.stderr").read_text(errors="replace")
        _read_time(time_files[i], info)
        if pollers:
            pollers[i].stop.set()
            info.rss_mb = pollers[i].peak / 2**20
    for info in infos:
        if info.rc != 0:
            raise RuntimeError(f"{info.name} exited {info.rc}:\n{info.stderr[-4000:]}")
    return wall, infos


def _wait_all(procs: list, pending: set, ends: list, deadline: float, cmds: list) -> None:
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                ends[i] = time.monotonic()
                pending.discard(i)
        if time.monotonic() > deadline:
            raise RuntimeError(f"timeout: {[c for _, c in cmds]}")
        time.sleep(0.02)


# ------------------------------------------------------------------------------ sandbox
class SandboxProc:
    """`dap-sandbox serve` in its own process (so its CPU use is not in ours)."""

    def __init__(self, rows: int, workdir: Path, name: str):
        self.data_dir = workdir / f"sandbox-{name}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready = workdir / f"sandbox-{name}.ready"
        ready.unlink(missing_ok=True)
        self.log = open(workdir / f"sandbox-{name}.log", "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [str(BIN / "dap-sandbox"), "serve", "--rows", f"{TABLE}={rows}",
             "--pregenerate", TABLE, "--data-dir", str(self.data_dir),
             "--ready-file", str(ready)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        while not ready.exists() or not ready.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError("dap-sandbox exited: "
                                   + (workdir / f"sandbox-{name}.log").read_text()[-3000:])
            time.sleep(0.2)
        self.pregen_seconds = time.monotonic() - t0
        env = json.loads(ready.read_text())
        self.url = env["DAP_API_URL"]
        self.client_id = env["DAP_CLIENT_ID"]
        self.client_secret = env["DAP_CLIENT_SECRET"]
        self.snapshot_files = sorted(self.data_dir.rglob("*.tsv.gz"))

    def admin(self, name: str, payload: dict | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(f"{self.url}/_sandbox/{name}", data=data,
                                     method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=1800) as r:
            return json.loads(r.read())

    def latest(self) -> str:
        return self.admin("state")[f"{NS}.{TABLE}"]["latest"]

    def warm_incremental(self, since: str) -> float:
        """Create the incremental job (same since as both clients use) so that its objects
        exist before timing; returns the generation seconds."""
        auth = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        req = urllib.request.Request(
            f"{self.url}/ids/auth/login",
            data=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
            headers={"Authorization": "Basic " + auth,
                     "Content-Type": "application/x-www-form-urlencoded"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            token = json.loads(r.read())["access_token"]
        t0 = time.monotonic()
        body = json.dumps({"format": "tsv", "mode": "condensed", "since": since}).encode()
        req = urllib.request.Request(
            f"{self.url}/dap/query/{NS}/table/{TABLE}/data", data=body, method="POST",
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=1800) as r:
            job = json.loads(r.read())
        while job.get("status") not in ("complete", "failed"):
            time.sleep(0.2)
            req = urllib.request.Request(f"{self.url}/dap/job/{job['id']}",
                                         headers={"Authorization": "Bearer " + token})
            with urllib.request.urlopen(req, timeout=60) as r:
                job = json.loads(r.read())
        if job.get("status") != "complete":
            raise RuntimeError(f"warm-up incremental job failed: {job}")
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# ------------------------------------------------------------------------------ databases
def _split(url: str) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(url)


def db_url(kind: str, name: str) -> str:
    admin = PG_ADMIN if kind == "postgresql" else MY_ADMIN
    return _split(admin)._replace(path="/" + name).geturl()


def pg_connect(url: str):
    import psycopg2

    return psycopg2.connect(url)


def my_connect(url: str):
    import mysql.connector

    p = _split(url)
    return mysql.connector.connect(host=p.hostname, port=p.port or 3306,
                                   user=p.username or "root", password=p.password or "",
                                   database=(p.path or "/").lstrip("/") or None,
                                   autocommit=True)


def fresh_db(kind: str, name: str) -> str:
    if kind == "postgresql":
        conn = pg_connect(PG_ADMIN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
        conn.close()
    else:
        conn = my_connect(MY_ADMIN)
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                    "COLLATE utf8mb4_unicode_ci")
        conn.close()
    return db_url(kind, name)


def drop_db(kind: str, name: str) -> None:
    try:
        if kind == "postgresql":
            conn = pg_connect(PG_ADMIN)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            conn = my_connect(MY_ADMIN)
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
    except Exception as exc:  # noqa: BLE001
        log(f"dropping {name}: {exc}")


def server_version(kind: str) -> str:
    if kind == "postgresql":
        conn = pg_connect(PG_ADMIN)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            v = "PostgreSQL " + cur.fetchone()[0]
    else:
        conn = my_connect(MY_ADMIN)
        cur = conn.cursor()
        cur.execute("SELECT VERSION()")
        v = cur.fetchone()[0]
        v = ("MariaDB " if "mariadb" in v.lower() else "MySQL ") + v
    conn.close()
    return v


def checksums(kind: str, url: str, per_column: bool = False) -> dict[str, Any]:
    """Row count and an order-independent checksum of the rows (per column when asked:
    of (key, value), to name the columns that differ).

    Values are compared as text; MySQL datetimes/times at whole seconds (dap's `datetime`
    drops the fraction, ours keeps it), binary as hex, JSON compacted.
    """
    if kind == "postgresql":
        conn = pg_connect(url)
        cur = conn.cursor()
        cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE "
                    "table_schema = %s AND table_name = %s ORDER BY column_name", (NS, TABLE))
        cols = [r[0] for r in cur.fetchall()]
        key = '"id"'

        def expr(c: str) -> str:
            return (f"sum(('x' || substr(md5({key}::text || '|' || coalesce(\"{c}\"::text, "
                    f"'~N')), 1, 15))::bit(60)::bigint)")

        if per_column:
            cur.execute(f"SELECT count(*), {', '.join(expr(c) for c in cols)} "
                        f'FROM "{NS}"."{TABLE}"')
        else:
            row_text = " || '|' || ".join(f"coalesce(\"{c}\"::text, '~N')" for c in cols)
            cur.execute(f"SELECT count(*), sum(('x' || substr(md5({row_text}), 1, 15))::bit(60)"
                        f'::bigint) FROM "{NS}"."{TABLE}"')
            cols = ["(all columns)"]
    else:
        conn = my_connect(url)
        cur = conn.cursor()
        cur.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE "
                    "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY COLUMN_NAME",
                    (f"{NS}__{TABLE}",))
        rows = [(r[0], r[1].decode() if isinstance(r[1], bytes) else r[1])
                for r in cur.fetchall()]
        cols = [r[0] for r in rows]
        types = dict(rows)

        def value(c: str) -> str:
            t = types[c].lower()
            if t == "datetime":
                return f"DATE_FORMAT(`{c}`, '%Y-%m-%d %H:%i:%s')"
            if t == "time":
                return f"TIME_FORMAT(`{c}`, '%H:%i:%s')"
            if t in ("binary", "varbinary", "blob"):
                return f"HEX(`{c}`)"
            if t in ("longtext", "json"):
                return f"IF(JSON_VALID(`{c}`), JSON_COMPACT(`{c}`), `{c}`)"
            if t in ("double", "float", "real"):
                return f"CAST(`{c}` AS DOUBLE)"
            return f"CAST(`{c}` AS CHAR)"

        def expr(c: str) -> str:
            return (f"SUM(CAST(CONV(SUBSTR(MD5(CONCAT(`id`, '|', IFNULL({value(c)}, '~N'))), 1, "
                    f"15), 16, 10) AS UNSIGNED))")

        if per_column:
            cur.execute(f"SELECT COUNT(*), {', '.join(expr(c) for c in cols)} "
                        f"FROM `{NS}__{TABLE}`")
        else:
            row_text = ", '|', ".join(f"IFNULL({value(c)}, '~N')" for c in cols)
            cur.execute(f"SELECT COUNT(*), SUM(CAST(CONV(SUBSTR(MD5(CONCAT({row_text})), 1, 15), "
                        f"16, 10) AS UNSIGNED)) FROM `{NS}__{TABLE}`")
            cols = ["(all columns)"]
    row = cur.fetchone()
    conn.close()
    values = {c: str(v) for c, v in zip(cols, row[1:], strict=True)}
    return {"count": int(row[0]), "columns": values}


def compare(kind: str, dap_url: str, our_url: str) -> tuple[bool, str]:
    a, b = checksums(kind, dap_url), checksums(kind, our_url)
    if a == b:
        return True, f"{a['count']} rows identical (count + row checksum over every column)"
    a, b = checksums(kind, dap_url, True), checksums(kind, our_url, True)
    if a["count"] != b["count"]:
        return False, f"row counts differ: dap {a['count']}, ours {b['count']}"
    if set(a["columns"]) != set(b["columns"]):
        return False, (f"columns differ: dap-only {sorted(set(a['columns']) - set(b['columns']))}"
                       f", ours-only {sorted(set(b['columns']) - set(a['columns']))}")
    bad = [c for c in a["columns"] if a["columns"][c] != b["columns"][c]]
    if bad:
        return False, f"{a['count']} rows; columns with different values: {bad}"
    return True, f"{a['count']} rows, {len(a['columns'])} columns identical"


def count_rows(kind: str, url: str) -> int:
    if kind == "postgresql":
        conn = pg_connect(url)
        cur = conn.cursor()
        cur.execute(f'SELECT count(*) FROM "{NS}"."{TABLE}"')
    else:
        conn = my_connect(url)
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM `{NS}__{TABLE}`")
    n = int(cur.fetchone()[0])
    conn.close()
    return n


def checkpoint(url: str) -> None:
    """Start every timed step on a quiet server: no autovacuum still working on the previous
    step's table (PostgreSQL vacuums a freshly loaded table right after the load, which would
    otherwise slow down whichever step comes next), no dirty pages left over."""
    if url.startswith("postgresql"):
        conn = pg_connect(url)
        conn.autocommit = True
        cur = conn.cursor()
        started, quiet = time.monotonic(), 0
        while quiet < 3 and time.monotonic() - started < 180:
            cur.execute("SELECT count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'autovacuum worker'")
            quiet = quiet + 1 if cur.fetchone()[0] == 0 else 0
            time.sleep(0.5)
        waited = time.monotonic() - started
        if waited > 2:
            log(f"waited {waited:.0f} s for autovacuum before the next timed step")
        cur.execute("CHECKPOINT")
        conn.close()
    else:
        conn = my_connect(url)
        conn.cursor().execute("FLUSH TABLES")
        conn.close()


# ------------------------------------------------------------------------------ steps
def dap_cmd(sb: SandboxProc, *args: str) -> list[str]:
    return [str(ensure_dap()), "--base-url", sb.url, "--client-id", sb.client_id,
            "--client-secret", sb.client_secret, "--no-tracking", "--non-interactive",
            "--loglevel", "info", *args]


def run_dap_step(sb: SandboxProc, command: str, url: str, workdir: Path, rows: int,
                 label: str) -> Run:
    env = dap_env(connection_string=url)
    logs = workdir / f"dap-{command}"
    logs.mkdir(exist_ok=True)
    checkpoint(url)
    wall, procs = run_pipeline([("dap", dap_cmd(sb, command, "--namespace", NS,
                                                "--table", TABLE))], env=env, workdir=logs)
    return Run(label, wall, rows, procs)


def run_ours(sb: SandboxProc, url: str, workdir: Path, rows: int, label: str,
             state_in: Path | None, state_out: Path, step: str) -> Run:
    tap_cfg = workdir / "tap.json"
    tap_cfg.write_text(json.dumps({
        "base_url": sb.url, "client_id": sb.client_id, "client_secret": sb.client_secret,
        "namespaces": [NS], "tables": [TABLE], "jobs_per_minute": 0,
        "temp_dir": str(workdir / "tap-tmp")}))
    target_cfg = workdir / "target.json"
    target_cfg.write_text(json.dumps({"connection_string": url}))
    tap = [str(BIN / "tap-canvas-data2"), "--config", str(tap_cfg)]
    if state_in is not None:
        tap += ["--state", str(state_in)]
    target = [str(BIN / "target-dap-sql"), "--config", str(target_cfg)]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DAP_", "TAP_CANVAS_DATA2_", "TARGET_DAP_SQL_"))}
    (workdir / "tap-tmp").mkdir(exist_ok=True)
    logs = workdir / step
    logs.mkdir(exist_ok=True)
    checkpoint(url)
    out = logs / "target.stdout"
    wall, procs = run_pipeline([("tap", tap), ("target", target)], env=env, workdir=logs,
                               stdout_path=out)
    lines = [ln for ln in out.read_text().splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError("the target printed no STATE")
    state_out.write_text(lines[-1] + "\n")
    return Run(label, wall, rows, procs)


def copy_limit(sb: SandboxProc, url: str, workdir: Path) -> tuple[Run, int]:
    """PostgreSQL COPY of the decompressed snapshot TSV into an empty copy of the table."""
    tsv = workdir / "snapshot.tsv"
    header: list[str] | None = None
    n = 0
    with open(tsv, "wb") as out:
        for part in sb.snapshot_files:
            with gzip.open(part, "rb") as f:
                head = f.readline().rstrip(b"\n").decode().split("\t")
                if header is None:
                    header = head
                elif head != header:
                    raise RuntimeError("objects with different headers")
                skip = header.index("meta.ts")
                if skip != 0:
                    raise RuntimeError("meta.ts is expected first")
                for line in f:
                    out.write(line.split(b"\t", 1)[1])
                    n += 1
    assert header is not None
    cols = ", ".join('"' + h.split(".", 1)[1] + '"' for h in header[1:])
    conn = pg_connect(url)
    cur = conn.cursor()
    cur.execute(f'DROP TABLE IF EXISTS "{NS}"."copy_limit"')
    cur.execute(f'CREATE TABLE "{NS}"."copy_limit" (LIKE "{NS}"."{TABLE}" INCLUDING ALL)')
    conn.commit()
    checkpoint(url)
    t0 = time.monotonic()
    with open(tsv, "rb") as f:
        cur.copy_expert(f'COPY "{NS}"."copy_limit" ({cols}) FROM STDIN', f, size=1 << 20)
    conn.commit()
    wall = time.monotonic() - t0
    cur.execute(f'DROP TABLE "{NS}"."copy_limit"')
    conn.commit()
    conn.close()
    tsv.unlink()
    return Run("PG COPY (decompressed TSV)", wall, n), n


# ------------------------------------------------------------------------------ report
def machine() -> dict[str, str]:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem,
            "python": platform.python_version(), "os": platform.platform()}


def fmt_rss(v: float | None) -> str:
    return "" if v is None else f"{v:.0f}"


def table_lines(kind: str, runs: dict[str, Run]) -> list[str]:
    out = ["| step | wall s | rows/s | tap MB | target MB | dap MB | ours/dap | ours/COPY |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    copy = runs.get("copy")
    for key in ("dap_init", "ours_init", "dap_sync", "ours_sync", "copy", "ours_init_small"):
        r = runs.get(key)
        if r is None:
            continue
        ratio = ""
        if key in ("ours_init", "ours_sync"):
            d = runs.get(key.replace("ours", "dap"))
            if d is not None:
                ratio = f"{r.wall / d.wall:.3f}"
        vs_copy = f"{r.wall / copy.wall:.1f}" if copy and key == "ours_init" else ""
        out.append(f"| {r.label} | {r.wall:.2f} | {r.rate:,.0f} | {fmt_rss(r.rss('tap'))} | "
                   f"{fmt_rss(r.rss('target'))} | {fmt_rss(r.rss('dap'))} | {ratio} | "
                   f"{vs_copy} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000,
                    help="rows of the memory-slope run (0 = skip)")
    ap.add_argument("--dbs", default="postgresql,mysql")
    ap.add_argument("--skip-dap", action="store_true", help="only our pipeline (no ratios)")
    ap.add_argument("--updates", type=int, default=None)
    ap.add_argument("--inserts", type=int, default=None)
    ap.add_argument("--deletes", type=int, default=None)
    ap.add_argument("--no-verify", action="store_true", help="skip the row checksums")
    ap.add_argument("--keep", action="store_true", help="keep the databases and files")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results.md"),
                    help="where to write the report ('' = nowhere)")
    args = ap.parse_args()
    dbs = [d.strip().replace("mariadb", "mysql") for d in args.dbs.split(",") if d.strip()]
    rows = args.rows
    updates = args.updates if args.updates is not None else rows // 10
    inserts = args.inserts if args.inserts is not None else rows // 50
    deletes = args.deletes if args.deletes is not None else rows // 50

    workdir = Path(tempfile.mkdtemp(prefix="dap-bench-"))
    load_start = os.getloadavg()
    log(f"work dir {workdir}")
    started = time.monotonic()
    if not args.skip_dap:
        t0 = time.monotonic()
        ensure_dap()
        log(f"dap client ready ({time.monotonic() - t0:.1f} s)")

    notes: list[str] = []
    results: dict[str, dict[str, Run]] = {d: {} for d in dbs}
    checks: dict[str, list[str]] = {d: [] for d in dbs}
    ok = True
    sb = SandboxProc(rows, workdir, "big")
    log(f"sandbox {sb.url}: {rows} rows, {len(sb.snapshot_files)} objects pre-generated in "
        f"{sb.pregen_seconds:.1f} s")
    notes.append(f"snapshot objects ({len(sb.snapshot_files)}) generated before timing in "
                 f"{sb.pregen_seconds:.1f} s")
    snapshot_at = sb.latest()
    names: dict[str, dict[str, str]] = {}
    try:
        # ---- initial loads
        for kind in dbs:
            names[kind] = {"dap": "bench_dap", "ours": "bench_ours"}
            wd = workdir / kind
            wd.mkdir()
            if not args.skip_dap:
                url = fresh_db(kind, "bench_dap")
                log(f"{kind}: dap initdb ...")
                r = run_dap_step(sb, "initdb", url, wd, rows, "dap initdb")
                results[kind]["dap_init"] = r
                log(f"{kind}: dap initdb {r.wall:.2f} s ({r.rate:,.0f} rows/s)")
            url = fresh_db(kind, "bench_ours")
            log(f"{kind}: tap | target first sync ...")
            r = run_ours(sb, url, wd, rows, "tap→target first sync", None,
                         wd / "state.json", "ours-initial")
            results[kind]["ours_init"] = r
            log(f"{kind}: ours {r.wall:.2f} s ({r.rate:,.0f} rows/s), tap "
                f"{r.rss('tap'):.0f} MB, target {r.rss('target'):.0f} MB")
            n = count_rows(kind, url)
            if n != rows:
                ok = False
                checks[kind].append(f"after first sync: ours holds {n} rows, expected {rows}")
            if not args.skip_dap and not args.no_verify:
                t0 = time.monotonic()
                same, text = compare(kind, db_url(kind, "bench_dap"), url)
                ok &= same
                checks[kind].append(f"after initdb: {'OK' if same else 'DIFFERENT'}: {text}")
                log(f"{kind}: compare after initdb ({time.monotonic() - t0:.1f} s): {text}")
        # ---- the limit
        if "postgresql" in dbs:
            log("postgresql: COPY limit ...")
            r, _ = copy_limit(sb, db_url("postgresql", "bench_ours"), workdir)
            results["postgresql"]["copy"] = r
            log(f"postgresql: COPY {r.wall:.2f} s ({r.rate:,.0f} rows/s)")
        # ---- advance + incremental
        t0 = time.monotonic()
        sb.admin("advance", {"namespace": NS, "table": TABLE, "inserts": inserts,
                             "updates": updates, "deletes": deletes})
        adv = time.monotonic() - t0
        gen = sb.warm_incremental(snapshot_at)
        log(f"advance ({updates} updates, {inserts} inserts, {deletes} deletes) {adv:.1f} s; "
            f"incremental objects generated in {gen:.1f} s (not timed)")
        notes.append(f"advance: {updates} updates, {inserts} inserts, {deletes} deletes; the "
                     f"incremental job's objects were generated before timing ({gen:.1f} s)")
        changes = updates + inserts + deletes
        for kind in dbs:
            wd = workdir / kind
            if not args.skip_dap:
                log(f"{kind}: dap syncdb ...")
                r = run_dap_step(sb, "syncdb", db_url(kind, "bench_dap"), wd, changes,
                                 "dap syncdb")
                results[kind]["dap_sync"] = r
                log(f"{kind}: dap syncdb {r.wall:.2f} s")
            log(f"{kind}: tap | target incremental ...")
            r = run_ours(sb, db_url(kind, "bench_ours"), wd, changes, "tap→target incremental",
                         wd / "state.json", wd / "state2.json", "ours-incremental")
            results[kind]["ours_sync"] = r
            log(f"{kind}: ours incremental {r.wall:.2f} s")
            expected = rows + inserts - deletes
            n = count_rows(kind, db_url(kind, "bench_ours"))
            if n != expected:
                ok = False
                checks[kind].append(f"after incremental: ours holds {n} rows, expected "
                                    f"{expected}")
            if not args.skip_dap and not args.no_verify:
                t0 = time.monotonic()
                same, text = compare(kind, db_url(kind, "bench_dap"), db_url(kind, "bench_ours"))
                ok &= same
                checks[kind].append(f"after syncdb: {'OK' if same else 'DIFFERENT'}: {text}")
                log(f"{kind}: compare after syncdb ({time.monotonic() - t0:.1f} s): {text}")
    finally:
        sb.stop()
        if not args.keep:
            for kind, nm in names.items():
                for n in nm.values():
                    drop_db(kind, n)

    # ---- memory slope
    if args.small:
        small = SandboxProc(args.small, workdir, "small")
        log(f"sandbox (small) {args.small} rows ready")
        try:
            for kind in dbs:
                wd = workdir / kind / "small"
                wd.mkdir(parents=True)
                url = fresh_db(kind, "bench_small")
                r = run_ours(small, url, wd, args.small, f"first sync, {args.small:,} rows",
                             None, wd / "state.json", "ours-initial")
                results[kind]["ours_init_small"] = r
                log(f"{kind}: small {r.wall:.2f} s, tap {r.rss('tap'):.0f} MB, target "
                    f"{r.rss('target'):.0f} MB")
                if not args.keep:
                    drop_db(kind, "bench_small")
        finally:
            small.stop()

    # ---- report
    versions = {k: server_version(k) for k in dbs}
    mach = machine()
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    report = [f"# Benchmark results ({now})", "",
              f"Command: `python benchmarks/run.py --rows {rows} --small {args.small} "
              f"--dbs {','.join(dbs)}{' --skip-dap' if args.skip_dap else ''}`", "",
              f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory']} RAM, "
              f"Python {mach['python']}, {mach['os']}; "
              + "; ".join(versions.values()) + "; official client instructure-dap-client "
              "2.3.1.", "",
              f"Table `{NS}.{TABLE}` (46 columns), {rows:,} rows; wall seconds end to end "
              "(tap and target run in parallel as two processes in a pipe); peak RSS per "
              "process (MB, /usr/bin/time -v).", ""]
    summary: list[str] = []
    for kind in dbs:
        rr = results[kind]
        report += [f"## {versions[kind]}", ""] + table_lines(kind, rr) + [""]
        for c in checks[kind]:
            report.append(f"- check: {c}")
        small_r = rr.get("ours_init_small")
        big_r = rr.get("ours_init")
        if small_r and big_r:
            for p in ("tap", "target"):
                a, b = small_r.rss(p), big_r.rss(p)
                if a and b:
                    line = (f"- {p} peak RSS {a:.0f} MB at {args.small:,} rows -> {b:.0f} MB at "
                            f"{rows:,} rows ({(b / a - 1) * 100:+.0f}%)")
                    report.append(line)
                    summary.append(f"{kind}: {line[2:]}")
        for step in ("init", "sync"):
            o, d = rr.get(f"ours_{step}"), rr.get(f"dap_{step}")
            if o and d:
                summary.append(f"{kind}: {step} ours {o.wall:.2f} s vs dap {d.wall:.2f} s "
                               f"-> ratio {o.wall / d.wall:.3f}")
        if big_r:
            for p in big_r.procs:
                report.append(f"- {p.name}: {p.cpu:.1f} s CPU during the first sync")
        report.append("")
    load_end = os.getloadavg()
    notes.append(f"load average (1/5/15 min) at start {load_start[0]:.1f}/{load_start[1]:.1f}/"
                 f"{load_start[2]:.1f}, at end {load_end[0]:.1f}/{load_end[1]:.1f}/"
                 f"{load_end[2]:.1f} (above ~0.5 means other work shared the 2 CPUs)")
    report += ["Notes:", ""] + [f"- {n}" for n in notes] + [
        f"- total benchmark time {time.monotonic() - started:.0f} s", ""]
    text = "\n".join(report)
    print(text)
    print("\n".join(summary))
    if args.results:
        Path(args.results).write_text(text)
        log(f"written {args.results}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
