"""Fidelity proof: Instructure's own client, `instructure-dap-client` 2.3.1 (CLI `dap`),
works against the sandbox, end to end, with real PostgreSQL and MariaDB.

Everything here goes through the real `dap` executable (its own venv, see
tests/helpers/dap_cli.py): `list`, `schema`, `snapshot` and `incremental` in jsonl/tsv/csv
(the downloaded files must decode to exactly `Sandbox.expected_rows`), then `initdb`,
`syncdb` after inserts/updates/deletes, and a schema bump, on both databases, comparing
every table and the `instructure_dap` meta tables.

The DDL that `dap` produced is kept as reference files under tests/golden/dap_ddl/
(one per dialect and table); target-dap-sql's tests compare their own DDL with them.
Run with UPDATE_DAP_DDL=1 to (re)write them; otherwise a difference fails the test, so a
change of the sandbox's schemas is noticed.

If the official client's venv cannot be made, the tests FAIL (never skip): CI installs it.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import db_compare as dbc
from tests.helpers.dap_cli import DapClientUnavailable, describe, ensure_dap, run_dap

NS = "canvas"
GOLDEN_DDL = Path(__file__).resolve().parent.parent / "golden" / "dap_ddl"
UPDATE_DDL = os.environ.get("UPDATE_DAP_DDL", "").lower() in ("1", "true", "yes")
SEED = 20241
ROWS_PER_TABLE = 40  # ten tables: a few hundred rows in all
ROWS_PER_OBJECT = 16

# inserts/updates/deletes applied between initdb and syncdb (several tables, one untouched)
CHANGES = {
    "accounts": (3, 4, 2),
    "users": (5, 7, 3),
    "courses": (2, 5, 1),
    "assignments": (4, 6, 2),
    "submissions": (6, 8, 4),
    "enrollments": (3, 3, 3),
}
BUMPED = "users"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dap_exe() -> Path:
    try:
        return ensure_dap()
    except DapClientUnavailable as exc:  # fail loudly: CI must be able to install it
        pytest.fail(f"the official DAP client is unavailable:\n{exc}", pytrace=False)


def _canvas_rows() -> dict[str, int]:
    from tap_canvas_data2.sandbox.catalog import load_definitions

    return {t: ROWS_PER_TABLE for t in load_definitions()[NS]}


@pytest.fixture
def sandbox(dap_exe):
    from tap_canvas_data2.sandbox import Sandbox

    # a few objects per table, so that multi-object jobs are exercised everywhere
    with Sandbox(seed=SEED, rows=_canvas_rows(), rows_per_object=ROWS_PER_OBJECT) as sb:
        yield sb


def dap(sb, *args: str, connection_string: str | None = None, timeout: float = 300):
    """Run `dap` against the sandbox; fail with its full output on a non-zero exit."""
    proc = run_dap(
        list(args), url=sb.url, client_id=sb.client_id, client_secret=sb.client_secret,
        connection_string=connection_string, timeout=timeout,
    )
    assert proc.returncode == 0, "dap failed against the sandbox\n" + describe(proc)
    return proc


# --------------------------------------------------------------------------- API access (ours)


class Api:
    """Minimal direct access to the sandbox's DAP API, to learn what the client was served."""

    def __init__(self, sb) -> None:
        self.base = sb.url.rstrip("/")
        basic = base64.b64encode(f"{sb.client_id}:{sb.client_secret}".encode()).decode()
        resp = requests.post(
            f"{self.base}/ids/auth/login", data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"}, timeout=30,
        )
        resp.raise_for_status()
        self.headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def schema(self, table: str, namespace: str = NS) -> dict[str, Any]:
        resp = requests.get(
            f"{self.base}/dap/query/{namespace}/table/{table}/schema",
            headers=self.headers, timeout=30,
        )
        resp.raise_for_status()
        return resp.json()


# --------------------------------------------------------------------------- dap's log


_STARTING = re.compile(r"Starting (\w+) of table '(.*)'(?: \(\d+ of \d+\))?$", re.MULTILINE)
_RETRIEVED = re.compile(r"successfully retrieved:\s*\n(\{.*\})")


def jobs_by_table(stderr: str) -> dict[str, dict[str, Any]]:
    """The completed job (id, at/since/until, schema_version, objects) the client logged for
    each table, from its INFO log ("Starting <op> of table 'x'" ... "retrieved:\\n{job}")."""
    out: dict[str, dict[str, Any]] = {}
    starts = list(_STARTING.finditer(stderr))
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(stderr)
        found = _RETRIEVED.search(stderr, m.end(), end)
        if found:
            out[m.group(2)] = json.loads(found.group(1))
    return out


# --------------------------------------------------------------------------- decoding files


_TSV_ESCAPES = {"\\": "\\", "0": "\0", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                "v": "\v", "N": None}


def _tsv_unescape(field: str) -> str | None:
    if field == "\\N":
        return None
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        ch = field[i]
        if ch == "\\" and i + 1 < len(field):
            nxt = field[i + 1]
            if nxt not in _TSV_ESCAPES or nxt == "N":
                raise AssertionError(f"invalid TSV escape \\{nxt} in {field!r}")
            out.append(_TSV_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _csv_fields(text: str) -> list[list[tuple[str, bool]]]:
    """RFC 4180 records as (value, was_quoted) pairs: unquoted NULL is SQL NULL."""
    records: list[list[tuple[str, bool]]] = []
    record: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            i += 1
            buf = []
            while True:
                j = text.index('"', i)
                buf.append(text[i:j])
                if j + 1 < n and text[j + 1] == '"':
                    buf.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            record.append(("".join(buf), True))
        else:
            j = i
            while j < n and text[j] not in ",\r\n":
                j += 1
            record.append((text[i:j], False))
            i = j
        if i < n and text[i] == ",":
            i += 1
            if not (i == n or text[i] in "\r\n"):
                continue
            record.append(("", False))  # an empty last field
        if text.startswith("\r\n", i):
            i += 2
        elif i < n and text[i] == "\n":
            i += 1
        records.append(record)
        record = []
    if record:
        records.append(record)
    return records


def _typed(text: str | None, prop: dict[str, Any] | None) -> Any:
    """A TSV/CSV text field as its JSON value (types from the property schema)."""
    if text is None:
        return None
    kind = dbc._kind(prop)
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    if kind == "boolean":
        assert text in ("true", "false"), f"boolean field {text!r}"
        return text == "true"
    if kind in ("object", "array"):
        return json.loads(text)
    return text


def _assemble(
    labels: list[str], values: list[Any], columns: dict[str, dict]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(row, meta) from `key.x` / `value.x` / `value.obj.member` / `meta.x` labels."""
    row: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for label, raw in zip(labels, values, strict=False):
        part, _, name = label.partition(".")
        if part == "meta":
            meta[name] = raw
            continue
        assert part in ("key", "value"), f"unexpected column label {label!r}"
        if name in columns or "." not in name:
            row[name] = _typed(raw, columns.get(name))
            continue
        top, _, member = name.partition(".")  # expanded mode: value.obj.member
        sub = (columns.get(top) or {}).get("properties", {})
        value = _typed(raw, sub.get(member))
        obj = row.setdefault(top, {})
        if value is not None:
            obj[member] = value
    for name, prop in columns.items():
        if dbc._kind(prop) == "object" and row.get(name) == {}:
            row[name] = None  # expanded: all members NULL == NULL object
    return row, meta


def _is_object(columns: dict[str, dict], label: str) -> bool:
    return dbc._kind(columns.get(label.partition(".")[2])) == "object"


def decode_object(path: Path, fmt: str, schema: dict[str, Any]) -> list[tuple[dict, dict]]:
    """Records of one downloaded object file: [(row, meta)], rows with every column."""
    columns, _ = dbc.column_schemas(schema)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    records: list[tuple[dict, dict]] = []
    if fmt == "jsonl":
        for line in text.splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            assert set(rec) <= {"key", "value", "meta"}, f"unexpected JSONL members {set(rec)}"
            row = {**rec["key"], **rec.get("value", {})}
            if rec.get("meta", {}).get("action") != "D":
                for name in columns:
                    row.setdefault(name, None)
            records.append((row, rec.get("meta", {})))
    elif fmt == "tsv":
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        labels = lines[0].split("\t")
        for line in lines[1:]:
            fields = [_tsv_unescape(f) for f in line.split("\t")]
            assert len(fields) == len(labels), (
                f"TSV line has {len(fields)} fields, header {len(labels)}"
            )
            records.append(_assemble(labels, fields, columns))
    elif fmt == "csv":
        rows = _csv_fields(text)
        labels = [v for v, _ in rows[0]]
        for rec in rows[1:]:
            assert len(rec) == len(labels), (
                f"CSV record has {len(rec)} fields, header {len(labels)}"
            )
            # NULL is the unquoted word NULL; the sandbox (after DAP) writes an all-NULL
            # nested object as a blank unquoted field in condensed CSV
            fields = [
                None if not q and (v == "NULL" or (v == "" and _is_object(columns, label)))
                else v
                for (v, q), label in zip(rec, labels, strict=True)
            ]
            records.append(_assemble(labels, fields, columns))
    else:
        raise ValueError(fmt)
    return records


def downloaded(
    out_dir: Path, job: dict[str, Any], fmt: str, schema: dict
) -> list[tuple[dict, dict]]:
    job_dir = out_dir / f"job_{job['id']}"
    files = sorted(p for p in job_dir.iterdir() if p.is_file())
    assert len(files) == len(job["objects"]), (
        f"{len(job['objects'])} objects in the job but {len(files)} files in {job_dir}"
    )
    for f in files:
        assert f.name.endswith(f".{fmt}.gz") or f.name.endswith(f".{fmt}"), (
            f"downloaded file {f.name} is not named *.{fmt}.gz"
        )
    out: list[tuple[dict, dict]] = []
    for f in files:
        out.extend(decode_object(f, fmt, schema))
    return out


def check_snapshot_files(
    sb, namespace: str, tables: list[str], schemas: dict, fmt: str, out: Path
) -> dict[str, str]:
    """`dap snapshot --table all --format fmt`: every table's files decode to exactly its
    expected rows; the job's `at` is the table's latest commit. Returns {table: at}."""
    proc = dap(sb, "snapshot", "--namespace", namespace, "--table", "all", "--format", fmt,
               "--output-directory", str(out))
    jobs = jobs_by_table(proc.stderr)
    assert set(jobs) == set(tables), f"no completed job logged for {set(tables) - set(jobs)}"
    for t in tables:
        job = jobs[t]
        assert "at" in job and "until" not in job, f"{t}: not a snapshot job: {job}"
        assert job["schema_version"] == schemas[t]["version"], (t, job)
        assert _same_instant(job["at"], sb.latest(namespace, t)), (
            f"{t}: snapshot at {job['at']} is not the latest commit {sb.latest(namespace, t)}"
        )
        records = downloaded(out, job, fmt, schemas[t]["schema"])
        for _, meta in records:
            assert "action" not in meta, f"{t} {fmt}: snapshot record with meta.action"
            assert meta.get("ts"), f"{t} {fmt}: record without meta.ts"
        rows = dbc.normalize_rows([r for r, _ in records], schemas[t]["schema"])
        assert len(rows) == len(records), f"{t} {fmt}: duplicate keys in the snapshot"
        dbc.assert_rows_equal(rows, sb.expected_rows(namespace, t),
                              schema_json=schemas[t]["schema"],
                              label=f"snapshot {namespace}.{t} ({fmt})")
    return {t: jobs[t]["at"] for t in tables}


# --------------------------------------------------------------------------- tests: files


def test_list_schema_snapshot_incremental(sandbox, tmp_path):
    sb = sandbox
    api = Api(sb)
    tables = list(sb.tables(NS))
    assert tables, "the sandbox serves no canvas tables"

    # dap list
    proc = dap(sb, "list", "--namespace", NS)
    listed = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    assert listed == tables, f"dap list printed {listed}, the sandbox has {tables}"

    # dap schema --table all: one <table>_schema_version_<v>.json per table
    schemas = {t: api.schema(t) for t in tables}
    for t in tables:
        assert schemas[t] == sb.schema(NS, t), f"{t}: served schema differs from Sandbox.schema"
    out = tmp_path / "schemas"
    dap(sb, "schema", "--namespace", NS, "--table", "all", "--output-directory", str(out))
    for t in tables:
        f = out / f"{t}_schema_version_{schemas[t]['version']}.json"
        assert f.exists(), f"dap schema wrote {sorted(p.name for p in out.iterdir())}, not {f.name}"
        assert json.loads(f.read_text()) == schemas[t], f"schema file of {t} differs from the API's"

    # dap snapshot in each text format: files decode to exactly expected_rows
    snapshot_at = {}
    for fmt in ("jsonl", "tsv", "csv"):
        snapshot_at = check_snapshot_files(sb, NS, tables, schemas, fmt, tmp_path / f"snap_{fmt}")

    # changes, then dap incremental --since <snapshot at>: applying U/D to the snapshot
    # gives the new expected rows
    before = {t: dbc.normalize_rows(sb.expected_rows(NS, t), schemas[t]["schema"]) for t in tables}
    commit_ts = {t: sb.advance(NS, t, inserts=i, updates=u, deletes=d)
                 for t, (i, u, d) in CHANGES.items()}
    # one `dap incremental` per format and distinct since (all tables start together)
    groups: dict[str, list[str]] = {}
    for t in CHANGES:
        groups.setdefault(snapshot_at[t], []).append(t)
    for fmt in ("jsonl", "tsv", "csv"):
        jobs: dict[str, dict] = {}
        outs: dict[str, Path] = {}
        for n, (since, group) in enumerate(groups.items()):
            out = tmp_path / f"incremental_{fmt}_{n}"
            proc = dap(sb, "incremental", "--namespace", NS, "--table", ",".join(group),
                       "--format", fmt, "--since", since, "--output-directory", str(out))
            found = jobs_by_table(proc.stderr)
            assert set(found) == set(group), f"no job logged for {set(group) - set(found)}"
            jobs.update(found)
            outs.update({t: out for t in group})
        for t in CHANGES:
            job, out = jobs[t], outs[t]
            assert job.get("since") is not None and job.get("until") is not None, job
            assert _same_instant(job["since"], snapshot_at[t]), (t, job, snapshot_at[t])
            assert _same_instant(job["until"], _ts_text(commit_ts[t])), (
                f"{t}: incremental until {job['until']} is not the commit {commit_ts[t]}"
            )
            records = downloaded(out, job, fmt, schemas[t]["schema"])
            i, u, d = CHANGES[t]
            actions = [m.get("action") for _, m in records]
            assert set(actions) <= {"U", "D"}, f"{t} {fmt}: actions {set(actions)}"
            assert actions.count("D") == d and actions.count("U") == i + u, (
                f"{t} {fmt}: {actions.count('U')} U / {actions.count('D')} D records, "
                f"expected {i + u} U / {d} D"
            )
            state = {pk: dict(row) for pk, row in before[t].items()}
            columns, key = dbc.column_schemas(schemas[t]["schema"])
            for row, meta in records:
                pk = dbc.normalize_value(row[key], columns[key])
                if meta["action"] == "D":
                    assert state.pop(pk, None) is not None, f"{t}: delete of unknown key {pk}"
                else:
                    state[pk] = row
            dbc.assert_rows_equal(
                dbc.normalize_rows(list(state.values()), schemas[t]["schema"]),
                sb.expected_rows(NS, t), schema_json=schemas[t]["schema"],
                label=f"snapshot + incremental {t} ({fmt})",
            )


def _ts_text(value: Any) -> str:
    """A sandbox commit time (µs since the epoch, a datetime or a string) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        import datetime as dt

        epoch = dt.datetime(1970, 1, 1)
        return dbc.format_datetime(epoch + dt.timedelta(microseconds=value))
    if hasattr(value, "isoformat"):
        return dbc.format_datetime(value)
    raise TypeError(f"cannot read a timestamp from {value!r}")


def _same_instant(a: str, b: str) -> bool:
    return dbc.parse_datetime(a) == dbc.parse_datetime(b)


# --------------------------------------------------------------------------- tests: databases


def _check_tables(sb, url: str, tables: list[str], schemas: dict[str, dict], stage: str) -> None:
    mysql = dbc.dialect_of(url) == "mysql"
    failures = []
    for t in tables:
        try:
            rows = dbc.fetch_rows(url, NS, t, schemas[t]["schema"])
            dbc.assert_rows_equal(
                rows, sb.expected_rows(NS, t), schema_json=schemas[t]["schema"],
                datetime_precision="second" if mysql else "microsecond",
                label=f"{stage}: {dbc.dialect_of(url)} {NS}.{t}",
            )
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def _check_meta(
    sb, url: str, tables: list[str], schemas: dict, jobs: dict, field: str
) -> None:
    """table_sync: one row per table, timestamp = the job's at/until = the table's latest
    commit in the sandbox (MySQL: to the second), schema_version = the served version,
    schema = the served one minus meta; database_version = [1]."""
    mysql = dbc.dialect_of(url) == "mysql"
    for t in tables:
        assert _same_instant(jobs[t][field], sb.latest(NS, t)), (
            f"{t}: the job's {field} {jobs[t][field]} is not the latest commit {sb.latest(NS, t)}"
        )
    rows = {r["source_table"]: r for r in dbc.meta_rows(url) if r["source_namespace"] == NS}
    assert sorted(rows) == sorted(tables), f"table_sync rows for {sorted(rows)}"
    for t in tables:
        r = rows[t]
        served = dbc.parse_datetime(jobs[t][field])
        if mysql:
            served = served.replace(microsecond=0)  # datetime without fsp: truncated
        assert dbc.parse_datetime(r["timestamp"]) == served, (
            f"{t}: table_sync.timestamp {r['timestamp']} but the job's {field} was {jobs[t][field]}"
        )
        assert r["schema_version"] == schemas[t]["version"], (t, r["schema_version"])
        assert r["target_schema"] == NS and r["target_table"] == t, r
        assert r["schema_description_format"] == "json", r
        served_schema = json.loads(json.dumps(schemas[t]["schema"]))
        served_schema["properties"].pop("meta", None)
        assert r["schema_description"] == served_schema, f"{t}: schema_description differs"
    assert dbc.database_versions(url) == [1]


def _golden(dialect: str, name: str, facts: dict[str, Any]) -> str | None:
    """Write (UPDATE_DAP_DDL=1) or compare a reference DDL file; return a problem or None."""
    path = GOLDEN_DDL / dialect / f"{name}.json"
    if UPDATE_DDL:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return None
    if not path.exists():
        return f"{path} is missing: run the test once with UPDATE_DAP_DDL=1 and commit it"
    saved = json.loads(path.read_text(encoding="utf-8"))
    problems = dbc.diff_ddl(facts, saved)
    if problems:
        return (f"DDL made by dap for {dialect} {name} differs from {path.name} "
                "(if the sandbox's schema changed on purpose, rerun with UPDATE_DAP_DDL=1):\n  "
                + "\n  ".join(problems))
    return None


def _replicate(sb, url: str) -> None:
    dialect = dbc.dialect_of(url)
    api = Api(sb)
    tables = list(sb.tables(NS))
    schemas = {t: api.schema(t) for t in tables}

    # initdb of every table
    proc = dap(sb, "initdb", "--namespace", NS, "--table", "all", connection_string=url)
    jobs = jobs_by_table(proc.stderr)
    assert set(jobs) == set(tables), f"initdb logged no job for {set(tables) - set(jobs)}"
    _check_tables(sb, url, tables, schemas, "after initdb")
    _check_meta(sb, url, tables, schemas, jobs, "at")

    # reference DDL of what dap made
    problems = []
    for t in tables:
        problems.append(_golden(dialect, t, dbc.ddl_facts(url, NS, t)))
    for meta_table in ("table_sync", "database_version"):
        problems.append(_golden(dialect, f"instructure_dap.{meta_table}",
                                dbc.ddl_facts(url, "instructure_dap", meta_table)))
    problems = [p for p in problems if p]
    assert not problems, "\n\n".join(problems)

    # dap listdb sees every table with its row count
    proc = dap(sb, "listdb", "--namespace", NS, connection_string=url)
    listed = json.loads(proc.stdout[proc.stdout.index("["):])
    counts = {e.get("table") or e.get("name"): e for e in listed}
    assert set(tables) <= set(counts), f"listdb shows {sorted(counts)}"

    # changes on several tables, then syncdb
    for t, (i, u, d) in CHANGES.items():
        sb.advance(NS, t, inserts=i, updates=u, deletes=d)
    proc = dap(sb, "syncdb", "--namespace", NS, "--table", "all", connection_string=url)
    jobs = jobs_by_table(proc.stderr)
    assert set(jobs) == set(tables), f"syncdb logged no job for {set(tables) - set(jobs)}"
    _check_tables(sb, url, tables, schemas, "after syncdb")
    _check_meta(sb, url, tables, schemas, jobs, "until")

    # schema bump (a new nullable column) + a change, then syncdb: the column appears
    before = {c["name"] for c in dbc.ddl_facts(url, NS, BUMPED)["columns"]}
    sb.bump_schema(NS, BUMPED)
    sb.advance(NS, BUMPED, inserts=2, updates=3, deletes=1)
    schemas[BUMPED] = api.schema(BUMPED)
    proc = dap(sb, "syncdb", "--namespace", NS, "--table", BUMPED, connection_string=url)
    jobs.update(jobs_by_table(proc.stderr))
    after = [c["name"] for c in dbc.ddl_facts(url, NS, BUMPED)["columns"]]
    served_cols = list(dbc.column_schemas(schemas[BUMPED]["schema"])[0])
    added = [c for c in after if c not in before]
    assert added and set(added) == set(served_cols) - before, (
        f"schema bump: columns now {after}, served {served_cols}"
    )
    _check_tables(sb, url, [BUMPED], schemas, "after schema bump + syncdb")
    _check_meta(sb, url, tables, schemas, jobs, "until")

    # a second syncdb with nothing new changes nothing
    proc = dap(sb, "syncdb", "--namespace", NS, "--table", "all", connection_string=url)
    _check_tables(sb, url, tables, schemas, "after an empty syncdb")


def test_initdb_syncdb_postgresql(sandbox, pg_url):
    _replicate(sandbox, pg_url)


def test_initdb_syncdb_mysql(sandbox, mysql_url):
    _replicate(sandbox, mysql_url)


# --------------------------------------------------------------------------- tests: other paths


def test_edge_cases_namespace_files(dap_exe, tmp_path):
    """Hostile identifiers (quotes, spaces, reserved words, non-ASCII, > 64 characters) in
    every file format. `dap initdb` itself cannot replicate this namespace: the client maps
    only canvas, canvas_logs, catalog and new_quizzes to database namespaces."""
    from tap_canvas_data2.sandbox import Sandbox

    ns = "edge_cases"
    with Sandbox(seed=SEED, rows_per_object=ROWS_PER_OBJECT) as sb:
        if ns not in sb.namespaces():
            pytest.fail(f"the sandbox has no {ns!r} namespace any more: update this test")
        tables = list(sb.tables(ns))
        schemas = {t: sb.schema(ns, t) for t in tables}
        for fmt in ("jsonl", "tsv", "csv"):
            check_snapshot_files(sb, ns, tables, schemas, fmt, tmp_path / f"snap_{fmt}")
        proc = run_dap(["list", "--namespace", ns], url=sb.url, client_id=sb.client_id,
                       client_secret=sb.client_secret)
        assert proc.returncode == 0, describe(proc)
        assert [x for x in proc.stdout.splitlines() if x.strip()] == tables


def test_reload_and_retention_postgresql(sandbox, pg_url):
    """A reloaded table (SnapshotRequiredError) and a `since` older than the retention
    (OutOfRangeError) reach the client as errors it understands (exit 5 with the sandbox's
    message, not a generic server error); dropdb + initdb recovers."""
    sb, t = sandbox, "users"
    schema = sb.schema(NS, t)
    dap(sb, "initdb", "--namespace", NS, "--table", t, connection_string=pg_url)

    sb.reload(NS, t)
    proc = run_dap(["syncdb", "--namespace", NS, "--table", t], url=sb.url,
                   client_id=sb.client_id, client_secret=sb.client_secret,
                   connection_string=pg_url)
    assert proc.returncode == 5, describe(proc)
    assert re.search(r"Operation syncdb failed\. Reason: .*snapshot is required", proc.stderr), (
        "the client did not report the SnapshotRequired error\n" + describe(proc)
    )
    dap(sb, "dropdb", "--namespace", NS, "--table", t, connection_string=pg_url)
    dap(sb, "initdb", "--namespace", NS, "--table", t, connection_string=pg_url)
    dbc.assert_rows_equal(dbc.fetch_rows(pg_url, NS, t, schema["schema"]),
                          sb.expected_rows(NS, t), schema_json=schema["schema"],
                          label="after reload + dropdb + initdb")
    [meta] = [r for r in dbc.meta_rows(pg_url) if r["source_table"] == t]
    assert _same_instant(meta["timestamp"], sb.latest(NS, t)), meta

    sb.advance(NS, t, inserts=1, updates=1)
    sb.expire_history(NS, t)
    proc = run_dap(["syncdb", "--namespace", NS, "--table", t], url=sb.url,
                   client_id=sb.client_id, client_secret=sb.client_secret,
                   connection_string=pg_url)
    assert proc.returncode == 5, describe(proc)
    assert re.search(r"Operation syncdb failed\. Reason: .*retention", proc.stderr), (
        "the client did not report the OutOfRange error\n" + describe(proc)
    )


def test_transient_faults_polling_and_relogin(dap_exe, tmp_path):
    """Jobs that are `waiting`/`running` first (the client polls every 5 s), 429 with
    Retry-After, 500/503 and dropped connections on API calls (the client retries), and
    short-lived tokens (the client logs in again before every request): all recovered,
    and the files are still exactly the expected rows."""
    from tap_canvas_data2.sandbox import Sandbox

    t = "accounts"
    with Sandbox(seed=SEED, rows={t: 30}, job_polls=1, token_ttl=120) as sb:
        schemas = {t: sb.schema(NS, t)}
        sb.inject("http_429", path="/dap/", count=1, retry_after=1)
        sb.inject("http_500", path="/dap/job", count=1)
        sb.inject("http_503", path="/dap/object", count=1)
        sb.inject("drop_connection", path="/dap/query", count=1)
        out = tmp_path / "snap"
        proc = dap(sb, "snapshot", "--namespace", NS, "--table", t, "--format", "tsv",
                   "--output-directory", str(out))
        assert "Query job still in status" in proc.stderr, (
            "the job was not polled (job_polls=1 should make it wait once)\n" + describe(proc)
        )
        job = jobs_by_table(proc.stderr)[t]
        rows = dbc.normalize_rows([r for r, _ in downloaded(out, job, "tsv", schemas[t]["schema"])],
                                  schemas[t]["schema"])
        dbc.assert_rows_equal(rows, sb.expected_rows(NS, t), schema_json=schemas[t]["schema"],
                              label="snapshot after faults")
        stats = sb.stats()
        assert stats["faults_armed"] == [], f"faults never fired: {stats['faults_armed']}"
        for kind in ("http_429", "http_500", "http_503", "drop_connection"):
            assert stats["faults_fired"].get(kind) == 1, stats["faults_fired"]
        logins = sum(v for k, v in _flatten(stats).items() if "login" in k and isinstance(v, int))
        assert logins >= 3, f"short-lived tokens should force several logins: {stats}"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}/{k}"))
    return out


def test_error_responses_the_client_understands(sandbox, tmp_path):
    """401 (bad secret), 404 (unknown table) and a failed job are each reported by the
    client with the sandbox's message, i.e. the error bodies deserialize as DAP errors."""
    sb = sandbox
    proc = run_dap(["list", "--namespace", NS], url=sb.url, client_id=sb.client_id,
                   client_secret="not-the-secret")
    assert proc.returncode == 5, describe(proc)
    assert re.search(r"ERROR - .*invalid client credentials", proc.stderr), describe(proc)

    proc = run_dap(["schema", "--namespace", NS, "--table", "no_such_table",
                    "--output-directory", str(tmp_path)],
                   url=sb.url, client_id=sb.client_id, client_secret=sb.client_secret)
    assert proc.returncode == 5, describe(proc)
    assert re.search(r"Reason: .*no_such_table", proc.stderr), describe(proc)

    sb.inject("job_fail", count=1)
    proc = run_dap(["snapshot", "--namespace", NS, "--table", "accounts",
                    "--output-directory", str(tmp_path)],
                   url=sb.url, client_id=sb.client_id, client_secret=sb.client_secret)
    assert proc.returncode == 5, describe(proc)
    assert "Query job ended with status: failed" in proc.stderr, describe(proc)


@pytest.mark.slow
def test_job_expiring_is_requeried(dap_exe, tmp_path):
    """A completed job expiring within 30 s makes the client wait 35 s and ask again."""
    from tap_canvas_data2.sandbox import Sandbox

    t = "enrollment_terms"
    with Sandbox(seed=SEED, rows={t: 10}) as sb:
        sb.inject("job_expiring", count=1)
        out = tmp_path / "snap"
        proc = dap(sb, "snapshot", "--namespace", NS, "--table", t, "--format", "jsonl",
                   "--output-directory", str(out))
        assert "about to expire" in proc.stderr, describe(proc)
        job = jobs_by_table(proc.stderr)[t]
        schema = sb.schema(NS, t)["schema"]
        rows = dbc.normalize_rows([r for r, _ in downloaded(out, job, "jsonl", schema)], schema)
        dbc.assert_rows_equal(rows, sb.expected_rows(NS, t), schema_json=schema)
