"""Secrets (client secret, access tokens, URL signatures) never reach messages or logs."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from tap_canvas_data2.api.client import DAPClient
from tap_canvas_data2.api.errors import DAPError
from tests.api.conftest import FAST, make_client


def test_no_secret_in_logs_or_errors(sb, caplog):
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    tokens: set[str] = set()
    signatures: set[str] = set()

    with make_client(sb) as c:
        orig_token, orig_urls = c.tokens.token, c.object_urls

        def token():
            t = orig_token()
            tokens.add(t)
            return t

        def object_urls(ids):
            urls = orig_urls(ids)
            for u in urls.values():
                q = parse_qs(urlsplit(u).query)
                signatures.update(q.get("X-Amz-Signature", []))
            return urls

        c.tokens.token, c.object_urls = token, object_urls
        schema, _ = c.get_schema("canvas", "users")
        sb.inject("token_revoke")
        sb.inject("http_429", path="/dap/", retry_after=0)
        sb.inject("url_expire", count=2)
        sb.inject("drop_mid_download", path="/objects/")
        job = c.snapshot("canvas", "users")
        assert len(list(c.records(job, schema))) == 1200
        for kind in ("job_fail",):
            sb.inject(kind)
            with pytest.raises(DAPError) as ei:
                c.snapshot("canvas", "users")
            messages.append(str(ei.value))
        sb.inject("url_expire", count=20)
        with pytest.raises(DAPError) as ei:
            list(c.download(job))[0][1].__next__()  # noqa: B018
        messages.append(str(ei.value))
        sb.inject("http_503", path="/dap/", count=20)
        with pytest.raises(DAPError) as ei:
            c.list_tables("canvas")
        messages.append(str(ei.value))
    with DAPClient(sb.url, sb.client_id, sb.client_secret + "x", **FAST) as bad:
        with pytest.raises(DAPError) as ei:
            bad.list_tables("canvas")
        messages.append(str(ei.value))

    assert len(tokens) == 2 and len(signatures) >= 4
    text = caplog.text + "\n".join(messages)
    assert "GET /objects/" in caplog.text or "/objects/" in caplog.text  # logged, redacted
    for secret in [sb.client_secret, *tokens, *signatures]:
        assert secret not in text
    assert "X-Amz-Signature" not in text and "Bearer " not in text
    assert all("\n" not in m for m in messages)
