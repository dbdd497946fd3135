"""HTTP front of the sandbox: the DAP endpoints, pre-signed object URLs and ``/_sandbox`` admin.

Stdlib only (``ThreadingHTTPServer``, HTTP/1.1 keep-alive, daemon threads). Every JSON answer
carries ``Content-Type: application/json`` (the official client refuses anything else);
objects are streamed from disk with ``sendfile`` and an exact ``Content-Length``, no
``Content-Encoding`` (the gzip bytes are the payload, as with S3).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import ACCOUNT_ERRORS, REQUEST_LEVEL
from .service import ApiError, S3Error, SandboxService, error

ADMIN = "/_sandbox/"


class DapServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], service: SandboxService):
        super().__init__(addr, Handler)
        self.service = service

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed tap, dropped connection) is not an error worth
        a traceback on the test's stderr; anything else is reported as usual."""
        import sys  # noqa: PLC0415

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dap-sandbox"
    server: DapServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests and benchmarks read stdout/stderr

    # --- plumbing ---------------------------------------------------------------------------
    @property
    def svc(self) -> SandboxService:
        return self.server.service

    def _body(self) -> str:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            data = b"".join(parts)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(n) if n else b""
        return data.decode("utf-8", errors="replace")

    def _send(self, status: int, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json", headers)

    def _drop(self) -> None:
        """Close the socket without (the rest of) a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- routing ----------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        segs = [unquote(s) for s in url.path.split("/")]
        path = "/".join(segs)
        query = parse_qs(url.query)
        body = self._body() if method in ("POST",) else ""
        if path.startswith(ADMIN):
            return self._admin(method, path[len(ADMIN):], query, body)
        endpoint = _endpoint(method, segs)
        status = 200
        try:
            f = self.svc.faults.take(REQUEST_LEVEL, path)
            if f is not None:
                if f.kind == "drop_connection":
                    status = 0
                    return self._drop()
                code = int(f.kind[5:])
                if code == 403:
                    raise error(403, f.extra["type"], ACCOUNT_ERRORS[f.extra["type"]])
                e = error(code, {429: "TooManyRequests", 500: "InternalServerError",
                                 503: "ServiceUnavailable"}[code],
                          f"injected fault {f.kind}")
                if code == 429:
                    e.headers["Retry-After"] = str(f.retry_after)
                raise e
            status = self._route(method, segs, path, query, body, endpoint)
        except ApiError as e:
            status = e.status
            self._json(e.status, e.body, e.headers)
        except S3Error as e:
            status = e.status
            self._send(e.status, e.xml(), "application/xml")
        except Exception as e:  # noqa: BLE001 - a sandbox bug must still answer in DAP shape
            status = 500
            self._json(500, error(500, "InternalServerError", f"sandbox error: {e!r}").body)
        finally:
            self.svc.count(endpoint, status)

    def _route(self, method: str, segs: list[str], path: str, query: dict, body: str,
               endpoint: str) -> int:
        svc = self.svc
        if endpoint == "login":
            form = parse_qs(body)
            self._json(200, svc.login(self.headers.get("Authorization"), form))
            return 200
        if endpoint == "get_object":
            return self._object(path, query)
        if endpoint == "unknown":
            raise error(404, "NotFoundError", f"no such endpoint: {method} {path}",
                        id=path, kind="endpoint")
        client = svc.authenticate(self.headers.get("Authorization"))
        if endpoint == "list_tables":
            self._json(200, {"tables": svc.list_tables(segs[3])})
        elif endpoint == "get_schema":
            self._json(200, svc.schema(segs[3], segs[5]))
        elif endpoint == "create_job":
            self._json(200, svc.create_job(segs[3], segs[5], body, client))
        elif endpoint == "get_job":
            self._json(200, svc.job(segs[3]))
        elif endpoint == "object_urls":
            self._json(200, svc.object_urls(body, self.server.base_url))
        return 200

    def _object(self, path: str, query: dict) -> int:
        p = self.svc.object_path(path, query)
        size = p.stat().st_size
        drop = self.svc.faults.take("drop_mid_download", path) is not None
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(p, "rb") as f:
            if drop:
                sent = self.connection.sendfile(f, 0, max(1, size // 2))
                self.svc.add_bytes(sent)
                self._drop()
                return 200
            sent = self.connection.sendfile(f, 0, size)
        self.svc.add_bytes(sent, objects=1)
        return 200

    # --- admin ------------------------------------------------------------------------------
    def _admin(self, method: str, name: str, query: dict, body: str) -> None:
        svc = self.svc
        host = self.client_address[0]
        if not (host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")):
            return self._json(403, {"error": "admin endpoints answer loopback clients only"})
        svc.count(f"admin:{name}")
        try:
            args = json.loads(body) if body.strip() else {}
            q = {k: v[0] for k, v in query.items()}
            if name == "expected":
                return self._expected(q["namespace"], q["table"])
            result = admin_call(svc, name, {**q, **args})
            self._json(200, result)
        except ApiError as e:
            self._json(e.status, e.body, e.headers)
        except (KeyError, TypeError, ValueError) as e:
            self._json(400, {"error": f"{type(e).__name__}: {e}"})

    def _expected(self, ns: str, table: str) -> None:
        rows = self.svc.expected_rows(ns, table)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        buf: list[str] = []
        for r in rows:
            buf.append(json.dumps(r, ensure_ascii=False))
            if len(buf) >= 5000:
                self._chunk(("\n".join(buf) + "\n").encode("utf-8"))
                buf = []
        if buf:
            self._chunk(("\n".join(buf) + "\n").encode("utf-8"))
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def admin_call(svc: SandboxService, name: str, a: dict[str, Any]) -> Any:
    """Admin operations shared by the HTTP endpoints (a = JSON body merged with the query)."""
    if name == "advance":
        return {"ts": svc.advance(a["namespace"], a["table"], int(a.get("inserts", 0)),
                                  int(a.get("updates", 0)), int(a.get("deletes", 0)),
                                  a.get("update_ids"), a.get("delete_ids"))}
    if name == "bump_schema":
        return {"version": svc.bump_schema(a["namespace"], a["table"], a.get("column"),
                                           a.get("type", "varchar(255)"))}
    if name == "reload":
        return {"ts": svc.reload(a["namespace"], a["table"])}
    if name == "expire_history":
        return {"horizon": svc.expire_history(a["namespace"], a["table"], a.get("before"))}
    if name == "inject":
        svc.inject(a["kind"], int(a.get("count", 1)), a.get("path"),
                   int(a.get("retry_after", 1)), a.get("type"))
        return {"armed": svc.faults.armed()}
    if name == "clear_faults":
        svc.faults.clear()
        return {"armed": []}
    if name == "tables":
        nss = [a["namespace"]] if a.get("namespace") else svc.catalog.namespaces()
        return {"namespaces": {ns: svc.list_tables(ns) for ns in nss}}
    if name == "stats":
        return svc.stats()
    if name == "reset_stats":
        svc.reset_stats()
        return svc.stats()
    if name == "state":
        return svc.state()
    if name == "pregenerate":
        return {"objects": svc.pregenerate(a["namespace"], a["table"], a.get("format", "tsv"),
                                           a.get("mode", "condensed"))}
    raise KeyError(f"unknown admin operation {name!r}")


def _endpoint(method: str, segs: list[str]) -> str:
    """Name of a DAP endpoint from the decoded path segments (``""`` first)."""
    s = segs[1:]
    if method == "POST" and s == ["ids", "auth", "login"]:
        return "login"
    if len(s) >= 3 and s[0] == "objects" and method == "GET":
        return "get_object"
    if len(s) == 4 and s[:2] == ["dap", "query"] and s[3] == "table" and method == "GET":
        return "list_tables"
    if len(s) == 6 and s[:2] == ["dap", "query"] and s[3] == "table":
        if s[5] == "schema" and method == "GET":
            return "get_schema"
        if s[5] == "data" and method == "POST":
            return "create_job"
    if len(s) == 3 and s[:2] == ["dap", "job"] and method == "GET":
        return "get_job"
    if s == ["dap", "object", "url"] and method == "POST":
        return "object_urls"
    return "unknown"


def serve_in_thread(service: SandboxService, host: str, port: int) -> tuple[DapServer,
                                                                             threading.Thread]:
    srv = DapServer((host, port), service)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                         name="dap-sandbox", daemon=True)
    t.start()
    return srv, t
