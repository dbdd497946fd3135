"""``dap-sandbox``: run the sandbox DAP API, or drive a running one through ``/_sandbox``.

    dap-sandbox serve [--host 127.0.0.1] [--port 0] [--seed 7] [--rows submissions=1000000 ...]
                      [--rows-per-object N] [--job-polls N] [--data-dir DIR]
                      [--pregenerate submissions ...] [--ready-file PATH]
    dap-sandbox advance --url URL --table users [--namespace canvas] [--inserts N]
                        [--updates N] [--deletes N]
    dap-sandbox bump-schema --url URL --table users [--column NAME] [--type varchar(255)]
    dap-sandbox reload --url URL --table users
    dap-sandbox inject --url URL --kind http_429 [--count N] [--path PREFIX] [--retry-after S]
    dap-sandbox clear-faults|stats|state|tables --url URL

``serve`` prints one line, ``DAP_API_URL=... DAP_CLIENT_ID=... DAP_CLIENT_SECRET=...``
(``eval``-able in a shell) and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.request
from typing import Any


def _rows(items: list[str]) -> dict[str, int]:
    out = {}
    for it in items:
        name, _, n = it.partition("=")
        if not n:
            raise SystemExit(f"--rows expects TABLE=N, got {it!r}")
        out[name] = int(n.replace("_", ""))
    return out


def serve(args: argparse.Namespace) -> int:
    from . import Sandbox

    sb = Sandbox(seed=args.seed, rows=_rows(args.rows), rows_per_object=args.rows_per_object,
                 job_polls=args.job_polls, data_dir=args.data_dir, host=args.host,
                 port=args.port)
    sb.start()
    for t in args.pregenerate:
        ns, _, table = t.rpartition(".")
        sb.pregenerate(ns or "canvas", table, args.pregenerate_format)
    # no quoting needed: '#' inside a word is not a shell comment
    line = " ".join(f"{k}={v}" for k, v in sb.env().items())
    print(line, flush=True)
    if args.ready_file:  # written whole, then renamed: whoever sees the file can read it
        partial = args.ready_file + ".partial"
        with open(partial, "w", encoding="utf-8") as f:
            f.write(json.dumps(sb.env()) + "\n")
        os.replace(partial, args.ready_file)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sb.stop()
    return 0


def _call(url: str, name: str, payload: dict[str, Any] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(f"{url.rstrip('/')}/_sandbox/{name}", data=data,
                                 method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dap-sandbox", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the sandbox API until killed")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--rows", nargs="*", default=[], metavar="TABLE=N")
    s.add_argument("--rows-per-object", type=int, default=100_000)
    s.add_argument("--job-polls", type=int, default=0)
    s.add_argument("--data-dir", default=None)
    s.add_argument("--pregenerate", nargs="*", default=[], metavar="[NS.]TABLE",
                   help="generate these snapshots before printing the ready line")
    s.add_argument("--pregenerate-format", default="tsv")
    s.add_argument("--ready-file", default=None,
                   help="write the connection settings as JSON here once serving")

    def admin(name: str, help_: str) -> argparse.ArgumentParser:
        a = sub.add_parser(name, help=help_)
        a.add_argument("--url", required=True, help="the sandbox base URL (DAP_API_URL)")
        return a

    for name in ("advance", "bump-schema", "reload"):
        a = admin(name, f"{name} a table")
        a.add_argument("--namespace", default="canvas")
        a.add_argument("--table", required=True)
        if name == "advance":
            for k in ("inserts", "updates", "deletes"):
                a.add_argument(f"--{k}", type=int, default=0)
        if name == "bump-schema":
            a.add_argument("--column", default=None)
            a.add_argument("--type", default="varchar(255)")
    a = admin("inject", "arm a fault")
    a.add_argument("--kind", required=True)
    a.add_argument("--count", type=int, default=1)
    a.add_argument("--path", default=None)
    a.add_argument("--retry-after", type=int, default=1)
    for name in ("clear-faults", "stats", "state", "tables"):
        admin(name, name)

    args = p.parse_args(argv)
    if args.cmd == "serve":
        return serve(args)
    payload = {k: v for k, v in vars(args).items() if k not in ("cmd", "url") and v is not None}
    get = args.cmd in ("stats", "state", "tables")
    out = _call(args.url, args.cmd.replace("-", "_"), None if get else payload)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
