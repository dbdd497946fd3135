"""Test helpers: talk to the sandbox over real HTTP and decode DAP objects independently.

The decoders here are written from the format description (dap-protocol.md "Object files"),
not by reusing the sandbox's encoders, so a round trip checks the encoders for real.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import requests


class Api:
    """A minimal DAP client on ``requests`` (no retries: tests want to see every answer)."""

    def __init__(self, sb):
        self.sb = sb
        self.url = sb.url
        self.http = requests.Session()
        self.token = self.login()

    def login(self) -> str:
        r = self.http.post(f"{self.url}/ids/auth/login", data={"grant_type": "client_credentials"},
                           auth=(self.sb.client_id, self.sb.client_secret), timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, headers=self.headers(), timeout=60)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.http.post(self.url + path, headers=self.headers(), json=body, timeout=120)

    def schema(self, table: str, ns: str = "canvas") -> dict[str, Any]:
        t = requests.utils.quote(table, safe="")
        return self.get(f"/dap/query/{ns}/table/{t}/schema").json()

    def job(self, table: str, ns: str = "canvas", **body: Any) -> dict[str, Any]:
        """Create a job and poll it to a terminal state."""
        r = self.post(f"/dap/query/{ns}/table/{requests.utils.quote(table, safe='')}/data", body)
        assert r.status_code == 200, r.text
        job = r.json()
        for _ in range(200):
            if job["status"] in ("complete", "failed"):
                return job
            job = self.get(f"/dap/job/{job['id']}").json()
        raise AssertionError(f"job never finished: {job}")

    def urls(self, job: dict[str, Any]) -> list[str]:
        r = self.post("/dap/object/url", job["objects"])
        assert r.status_code == 200, r.text
        urls = r.json()["urls"]
        return [urls[o["id"]]["url"] for o in job["objects"]]

    def download(self, job: dict[str, Any]) -> list[bytes]:
        """Raw (gunzipped) bytes of every object, in order."""
        out = []
        for u in self.urls(job):
            r = self.http.get(u, timeout=120)
            assert r.status_code == 200, r.text
            assert r.headers["Content-Type"] == "application/octet-stream"
            assert "Content-Encoding" not in r.headers
            assert int(r.headers["Content-Length"]) == len(r.content)
            out.append(gzip.decompress(r.content))
        return out


# --- decoders ---------------------------------------------------------------------------------

_TSV_UNESCAPE = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v",
                 "0": "\0"}


def tsv_field(raw: str) -> str | None:
    """One TSV field: ``\\N`` is NULL, else undo the backslash escapes."""
    if raw == "\\N":
        return None
    if "\\" not in raw:
        return raw
    out = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            nxt = raw[i + 1]
            assert nxt in _TSV_UNESCAPE, f"unknown escape \\{nxt} in {raw!r}"
            out.append(_TSV_UNESCAPE[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_tsv(text: str) -> tuple[list[str], list[list[str | None]]]:
    lines = text.split("\n")
    assert lines[-1] == "", "a TSV object ends with a newline"
    head = [tsv_field(h) for h in lines[0].split("\t")]
    rows = []
    for line in lines[1:-1]:
        fields = line.split("\t")
        assert len(fields) == len(head), (len(fields), len(head), line[:200])
        rows.append([tsv_field(f) for f in fields])
    return head, rows  # type: ignore[return-value]


class Blank:
    """CSV: an unquoted empty field (a "missing" value, e.g. an all-NULL nested object)."""


def parse_csv(text: str) -> tuple[list[str], list[list[Any]]]:
    """RFC 4180 with DAP's extensions: unquoted NULL is None, unquoted empty is Blank."""
    records: list[list[Any]] = []
    row: list[Any] = []
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
                else:
                    i = j + 1
                    break
            row.append("".join(buf))
        else:
            j = i
            while j < n and text[j] not in ",\n":
                j += 1
            raw = text[i:j]
            row.append(None if raw == "NULL" else Blank if raw == "" else raw)
            i = j
        if i < n and text[i] == ",":
            i += 1  # an empty field before a line end is read as Blank by the next round
        elif i < n and text[i] == "\n":
            records.append(row)
            row = []
            i += 1
    if row:
        records.append(row)
    head = records[0]
    for r in records[1:]:
        assert len(r) == len(head)
    return head, records[1:]


def typed(text: Any, prop: dict[str, Any]) -> Any:
    """Text of a TSV/CSV field -> the JSON-form value (as ``expected_rows`` gives it)."""
    if text is None or text is Blank:
        return None
    t = prop.get("type")
    if t == "integer":
        return int(text)
    if t == "number":
        return float(text)
    if t == "boolean":
        assert text in ("true", "false"), text
        return text == "true"
    if t in ("object", "array"):
        return json.loads(text)
    return text


def decode_rows(fmt: str, mode: str, blobs: list[bytes], schema: dict[str, Any],
                incremental: bool) -> list[dict[str, Any]]:
    """Objects -> list of ``{"_ts", "_action", <key>, <value columns>}`` dicts."""
    key_props = schema["properties"]["key"]["properties"]
    val_props = schema["properties"]["value"]["properties"]
    out = []
    for blob in blobs:
        text = blob.decode("utf-8")
        if fmt == "jsonl":
            for line in text.splitlines():
                rec = json.loads(line)
                d: dict[str, Any] = {"_ts": rec["meta"]["ts"],
                                     "_action": rec["meta"].get("action")}
                d.update(rec["key"])
                if "value" in rec:
                    for c in val_props:
                        d[c] = rec["value"].get(c)
                out.append(d)
            continue
        head, rows = parse_tsv(text) if fmt == "tsv" else parse_csv(text)
        expect = ["meta.ts"] + (["meta.action"] if incremental else [])
        assert head[: len(expect)] == expect, head[:3]
        for r in rows:
            f = dict(zip(head, r, strict=False))
            d = {"_ts": f["meta.ts"], "_action": f.get("meta.action")}
            for k, p in key_props.items():
                d[k] = typed(f[f"key.{k}"], p)
            if d["_action"] == "D":
                out.append(d)
                continue
            for c, p in val_props.items():
                if mode == "expanded" and p.get("type") == "object":
                    members = {m: typed(f[f"value.{c}.{m}"], mp)
                               for m, mp in p["properties"].items()}
                    members = {m: v for m, v in members.items() if v is not None}
                    d[c] = members or None
                else:
                    d[c] = typed(f[f"value.{c}"], p)
            out.append(d)
    return out


def strip_meta(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
