"""`canvas-data2`: the `dap` CLI's commands, built on the Singer pair.

Each command maps to the `dap` command of the same name, reads the same environment
variables (DAP_API_URL, DAP_CLIENT_ID, DAP_CLIENT_SECRET, DAP_CONNECTION_STRING) and leaves
the same database. initdb/syncdb run `tap-canvas-data2 | target-dap-sql` as two processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from canvas_data2.pipeline import run_pipeline

DEFAULT_CONNECTION = "sqlite:///canvas_data2.db"


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _api_settings(args: argparse.Namespace) -> dict:
    """Tap settings from flags, else the dap environment variables (the tap reads them too)."""
    settings: dict = {}
    for key, flag in (("base_url", "base_url"), ("client_id", "client_id"),
                      ("client_secret", "client_secret")):
        value = getattr(args, flag, None)
        if value:
            settings[key] = value
    if getattr(args, "temp_dir", None):
        settings["temp_dir"] = args.temp_dir
    if getattr(args, "jobs_per_minute", None) is not None:
        settings["jobs_per_minute"] = args.jobs_per_minute
    return settings


def _require_credentials(args: argparse.Namespace) -> None:
    """Fail early, in one line, when a command that talks to DAP has no credentials
    (instead of a traceback from the export, or a failed pipeline from the tap)."""
    base_url = args.base_url or os.environ.get("DAP_API_URL")
    if base_url == "sandbox":
        return
    if not (args.client_id or os.environ.get("DAP_CLIENT_ID")) or not (
        args.client_secret or os.environ.get("DAP_CLIENT_SECRET")
    ):
        raise UsageError(
            "DAP credentials missing: set DAP_CLIENT_ID and DAP_CLIENT_SECRET "
            "(or pass --client-id/--client-secret)"
        )


def _connection_string(args: argparse.Namespace) -> str:
    return (
        getattr(args, "connection_string", None)
        or os.environ.get("DAP_CONNECTION_STRING")
        or DEFAULT_CONNECTION
    )


def _tables(args: argparse.Namespace, available: list[str] | None = None) -> list[str]:
    """`--table a,b` or `all` (dap's syntax); names are trimmed (dap does not trim)."""
    raw = [t.strip() for t in (args.table or "all").split(",") if t.strip()]
    if raw == ["all"]:
        return list(available) if available is not None else ["all"]
    return raw


def _client(args: argparse.Namespace):
    from tap_canvas_data2.api.client import DAPClient

    base_url = args.base_url or os.environ.get("DAP_API_URL") or "https://api-gateway.instructure.com"
    client_id = args.client_id or os.environ.get("DAP_CLIENT_ID")
    client_secret = args.client_secret or os.environ.get("DAP_CLIENT_SECRET")
    if not client_id or not client_secret:
        raise UsageError(
            "DAP credentials missing: set DAP_CLIENT_ID and DAP_CLIENT_SECRET "
            "(or pass --client-id/--client-secret)"
        )
    return DAPClient(base_url, client_id, client_secret)


# --- commands -----------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    """`dap list`: table names of a namespace."""
    for name in _client(args).list_tables(args.namespace):
        print(name)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """`dap schema`: write `<table>_schema_version_<v>.json` (the DAP schema with its version,
    as the API serves it) per table, the file name `dap schema` uses."""
    client = _client(args)
    out = Path(args.output_directory)
    out.mkdir(parents=True, exist_ok=True)
    everything = args.table in (None, "all")
    for table in _tables(args, client.list_tables(args.namespace) if everything else None):
        schema, version = client.get_schema(args.namespace, table)
        path = out / f"{table}_schema_version_{version}.json"
        path.write_text(json.dumps({"schema": schema, "version": version}, indent=2))
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`dap snapshot` / `dap incremental`: download the job's objects as local files,
    `<output-directory>/<table>/part-<n>.<format>` (one directory per table, so that several
    tables do not overwrite each other's parts). Prints the files; logs the job's window."""
    from tap_canvas_data2 import export

    _require_credentials(args)
    config = {**_api_settings(args)}
    out = Path(args.output_directory)
    tables = _tables(args)
    if tables == ["all"]:
        tables = _client(args).list_tables(args.namespace)
    for table in tables:
        if args.command == "snapshot":
            result = export.export_snapshot(
                config, args.namespace, table, out / table, args.format
            )
            window = f"at {result.at}"
        else:
            result = export.export_incremental(
                config, args.namespace, table, args.since, args.until, out / table, args.format
            )
            window = f"since {result.since} until {result.until}"
        print(f"{args.namespace}.{table}: {args.command} job {result.job_id} {window}, "
              f"schema version {result.schema_version}, {len(result.files)} file(s)",
              file=sys.stderr)
        for path in result.files:
            print(path)
    return 0


def _initialized(conn: str, namespace: str) -> dict[str, dict]:
    from target_dap_sql.admin import state_from_meta

    bookmarks = state_from_meta(conn).get("bookmarks", {})
    prefix = f"{namespace}-"
    return {k[len(prefix):]: v for k, v in bookmarks.items() if k.startswith(prefix)}


def cmd_initdb(args: argparse.Namespace) -> int:
    """`dap initdb`: snapshot each table into the database; refuses initialized tables."""
    _require_credentials(args)
    conn = _connection_string(args)
    done = _initialized(conn, args.namespace)
    tables = _tables(args)
    if tables == ["all"]:
        tables = _client(args).list_tables(args.namespace)
    refused = [t for t in tables if t in done]
    for table in refused:
        print(f"error: {args.namespace}.{table}: table already initialized; run syncdb to "
              "update it (or dropdb then initdb to start over)", file=sys.stderr)
    todo = [t for t in tables if t not in done]
    if not todo:
        return 5 if refused else 0
    rc = _run(args, conn, todo, state=None)
    return rc or (5 if refused else 0)


def cmd_syncdb(args: argparse.Namespace) -> int:
    """`dap syncdb`: incremental changes since each table's stored timestamp."""
    _require_credentials(args)
    conn = _connection_string(args)
    done = _initialized(conn, args.namespace)
    tables = _tables(args)
    if tables == ["all"]:
        if not done:
            return _fail(f"no table of namespace {args.namespace!r} is initialized in "
                         f"{_redacted(conn)}: table not initialized; run initdb first", 5)
        tables = sorted(done)
    missing = [t for t in tables if t not in done]
    for table in missing:
        print(f"error: {args.namespace}.{table}: table not initialized; run initdb first",
              file=sys.stderr)
    todo = [t for t in tables if t in done]
    if not todo:
        return 5 if missing else 0
    state = {"bookmarks": {f"{args.namespace}-{t}": done[t] for t in todo}}
    rc = _run(args, conn, todo, state=state)
    return rc or (5 if missing else 0)


def _run(args: argparse.Namespace, conn: str, tables: list[str], state: dict | None) -> int:
    tap_config = {**_api_settings(args), "namespaces": [args.namespace], "tables": tables}
    result = run_pipeline(tap_config, {"connection_string": conn}, state=state)
    if not result.ok:
        return _fail(
            f"pipeline failed (tap exit {result.tap_returncode}, target exit "
            f"{result.target_returncode}); tables whose state was committed are kept, "
            "rerun to resume",
            5,
        )
    return 0


def cmd_listdb(args: argparse.Namespace) -> int:
    """`dap listdb`: replicated tables with row counts, last sync time and schema version."""
    from target_dap_sql.admin import listdb

    rows = listdb(_connection_string(args))
    if args.json or (not sys.stdout.isatty() and not getattr(args, "human", False)):
        print(json.dumps(rows, default=str, indent=None))
        return 0
    print(f"{'table':<40} {'rows':>10}  {'last sync (UTC)':<27} schema")
    for row in rows:
        print(f"{row['namespace'] + '.' + row['table']:<40} {row['rows']:>10}  "
              f"{str(row['timestamp']):<27} v{row['schema_version']}")
    return 0


def cmd_dropdb(args: argparse.Namespace) -> int:
    """`dap dropdb`: drop a replicated table and its meta row."""
    from target_dap_sql.admin import dropdb

    conn = _connection_string(args)
    tables = _tables(args)
    if tables == ["all"]:
        tables = sorted(_initialized(conn, args.namespace))
    for table in tables:
        dropdb(conn, args.namespace, table)
        print(f"dropped {args.namespace}.{table}", file=sys.stderr)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    """Print the tap state recorded in the database's meta table (migrating from `dap`):
    `{"bookmarks": ...}` for `tap-canvas-data2 --state`, or with --meltano
    `{"singer_state": {"bookmarks": ...}}`, the form `meltano state set` accepts."""
    from target_dap_sql.admin import state_from_meta

    state = state_from_meta(_connection_string(args))
    print(json.dumps({"singer_state": state} if args.meltano else state))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the sandbox, initdb every table, apply a round of changes, syncdb, list."""
    from tap_canvas_data2.sandbox import Sandbox

    conn = _connection_string(args)
    started = time.monotonic()
    with Sandbox(seed=args.seed) as sb:
        args.base_url, args.client_id, args.client_secret = sb.url, sb.client_id, sb.client_secret
        if args.jobs_per_minute is None:
            args.jobs_per_minute = 0  # the sandbox does not limit job creation
        tables = sb.tables(args.namespace)
        print(f"sandbox DAP API at {sb.url}: {len(tables)} tables in {args.namespace!r}; "
              f"loading into {_redacted(conn)}", file=sys.stderr)
        done = _initialized(conn, args.namespace)
        fresh = [t for t in tables if t not in done]
        if fresh:
            rc = _run(args, conn, fresh, state=None)
            if rc:
                return rc
        for table in tables:
            sb.advance(args.namespace, table, inserts=3, updates=5, deletes=2)
        args.table = ",".join(tables)
        rc = cmd_syncdb(args)
        if rc:
            return rc
    print(f"demo finished in {time.monotonic() - started:.1f} s; what is in the database:",
          file=sys.stderr)
    args.json, args.human = False, True
    return cmd_listdb(args)


def _redacted(url: str) -> str:
    from target_dap_sql.connection import redact

    return redact(url)


# --- parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canvas-data2",
        description="Canvas Data 2 into PostgreSQL, MySQL/MariaDB or SQLite: the dap CLI's "
        "commands on top of tap-canvas-data2 | target-dap-sql.",
    )
    parser.add_argument("--base-url", help="DAP API URL (env DAP_API_URL)")
    parser.add_argument("--client-id", help="DAP client ID (env DAP_CLIENT_ID)")
    parser.add_argument("--client-secret", help="DAP client secret (env DAP_CLIENT_SECRET)")
    parser.add_argument("--connection-string",
                        help="database URL (env DAP_CONNECTION_STRING, default "
                        f"{DEFAULT_CONNECTION})")
    parser.add_argument("--temp-dir", help="spool downloaded objects here instead of memory")
    parser.add_argument("--jobs-per-minute", type=float, default=None,
                        help="query jobs started per minute at most (tap default 5, DAP's "
                        "limit; 0 = no spacing)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str, table: bool = True):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--namespace", default="canvas")
        if table:
            p.add_argument("--table", default="all", help="table, comma-separated list, or all")
        p.set_defaults(func=func)
        return p

    add("list", cmd_list, "list the tables of a namespace", table=False)
    p = add("schema", cmd_schema, "save table schemas as JSON files")
    p.add_argument("--output-directory", default="downloads")
    for name, help_ in (("snapshot", "download a full snapshot as files"),
                        ("incremental", "download changes since a timestamp as files")):
        p = add(name, cmd_export, help_)
        p.add_argument("--format", default="jsonl", choices=["jsonl", "tsv", "csv"])
        p.add_argument("--output-directory", default="downloads")
        if name == "incremental":
            p.add_argument("--since", required=True,
                           help="ISO timestamp with zone, e.g. 2026-01-01T00:00:00Z")
            p.add_argument("--until", help="ISO timestamp with zone (default: latest)")
    add("initdb", cmd_initdb, "snapshot tables into the database")
    add("syncdb", cmd_syncdb, "apply changes since the last sync")
    p = add("listdb", cmd_listdb, "list replicated tables", table=False)
    p.add_argument("--json", action="store_true")
    add("dropdb", cmd_dropdb, "drop replicated tables and their sync records")
    p = add("state", cmd_state, "print Singer state from the database's sync records",
            table=False)
    p.add_argument("--meltano", action="store_true",
                   help='wrap it as {"singer_state": ...} for `meltano state set`')
    p = add("demo", cmd_demo, "run the whole pipeline against the built-in sandbox", table=False)
    p.add_argument("--seed", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `canvas-data2` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # one line, no traceback, for errors we typed ourselves
        if type(exc).__module__.startswith(("tap_canvas_data2", "target_dap_sql")):
            return _fail(str(exc), 5)
        raise


if __name__ == "__main__":
    sys.exit(main())
