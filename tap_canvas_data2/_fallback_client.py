"""TEMPORARY minimal DAP client, used by the tap only while tap_canvas_data2.api.client is
not available. Same call shapes as DapSession expects from DAPClient. To be removed."""

from __future__ import annotations

import threading
import time
import typing as t

import requests

from tap_canvas_data2.api.errors import error_from_response


class MiniDAPClient:
    def __init__(self, base_url: str, client_id: str, client_secret: str,
                 jobs_per_minute: float = 5, poll_interval_max: float = 5.0,
                 max_retries: int = 3, backoff_max: float = 30.0, **_: t.Any) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self.jobs_per_minute = float(jobs_per_minute or 5)
        self.poll_interval_max = float(poll_interval_max or 5.0)
        self.max_retries = int(max_retries or 3)
        self.session = requests.Session()
        self._token: str | None = None
        self._token_exp = 0.0
        self._lock = threading.Lock()
        self._last_job = 0.0

    def _auth(self) -> str:
        with self._lock:
            if self._token and time.time() < self._token_exp - 300:
                return self._token
            r = self.session.post(f"{self.base_url}/ids/auth/login",
                                  data={"grant_type": "client_credentials"},
                                  auth=(self.client_id, self.client_secret), timeout=60)
            if r.status_code != 200:
                raise error_from_response(r.status_code, _json(r), what="login",
                                          secrets=(self.client_secret,))
            body = r.json()
            self._token = body["access_token"]
            self._token_exp = time.time() + float(body.get("expires_in", 3600))
            return self._token

    def _req(self, method: str, path: str, ns: str | None = None, table: str | None = None,
             **kw: t.Any) -> t.Any:
        for attempt in range(1, self.max_retries + 2):
            try:
                r = self.session.request(method, f"{self.base_url}{path}", timeout=120,
                                         headers={"Authorization": f"Bearer {self._auth()}"},
                                         **kw)
            except requests.ConnectionError:
                if attempt > self.max_retries:
                    raise
                time.sleep(min(2 ** attempt * 0.1, 2))
                continue
            if r.status_code == 429 or r.status_code >= 500:
                if attempt <= self.max_retries:
                    time.sleep(min(float(r.headers.get("Retry-After") or 0.2), 5))
                    continue
            if r.status_code != 200:
                raise error_from_response(r.status_code, _json(r), what=f"{method} {path}",
                                          namespace=ns, table=table, attempts=attempt)
            return r.json()
        raise AssertionError("unreachable")

    def list_tables(self, ns: str) -> list[str]:
        return self._req("GET", f"/dap/query/{ns}/table", ns)["tables"]

    def get_schema(self, ns: str, table: str) -> tuple[dict, int]:
        body = self._req("GET", f"/dap/query/{ns}/table/{table}/schema", ns, table)
        return body["schema"], int(body["version"])

    def _job(self, ns: str, table: str, body: dict) -> dict:
        gap = 60.0 / self.jobs_per_minute
        wait = self._last_job + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_job = time.monotonic()
        job = self._req("POST", f"/dap/query/{ns}/table/{table}/data", ns, table, json=body)
        delay = 0.05
        while job.get("status") in ("waiting", "running"):
            time.sleep(delay)
            delay = min(delay * 2, self.poll_interval_max)
            job = self._req("GET", f"/dap/job/{job['id']}", ns, table)
        if job.get("status") != "complete":
            raise error_from_response(400, job, what="job", namespace=ns, table=table)
        return job

    def snapshot(self, ns: str, table: str, format: str = "tsv",  # noqa: A002
                 mode: str = "condensed") -> dict:
        return self._job(ns, table, {"format": format, "mode": mode})

    def incremental(self, ns: str, table: str, since: str, until: str | None = None,
                    format: str = "tsv", mode: str = "condensed") -> dict:  # noqa: A002
        body = {"format": format, "mode": mode, "since": since}
        if until:
            body["until"] = until
        return self._job(ns, table, body)

    def object_urls(self, job: dict) -> dict[str, str]:
        ids = [o["id"] for o in job["objects"]] if isinstance(job, dict) else list(job)
        if not ids:
            return {}
        body = self._req("POST", "/dap/object/url", json=[{"id": i} for i in ids])
        return {k: v["url"] for k, v in body["urls"].items()}

    def download(self, url: str) -> bytes:
        r = self.session.get(url, timeout=300)
        r.raise_for_status()
        return r.content


def _json(r: requests.Response) -> t.Any:
    try:
        return r.json()
    except ValueError:
        return r.text
