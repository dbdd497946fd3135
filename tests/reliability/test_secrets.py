"""Secrets never leak: client secret, access tokens, database passwords and pre-signed URL
signatures appear in no stdout/stderr of the pipe at DEBUG log level (singer-sdk 0.54.9 reads
`LOGLEVEL` / `<PLUGIN>_LOGLEVEL`), on the happy path (with faults that make the client log
retries, re-logins and URL renewals) and on failure paths."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from tap_canvas_data2.sandbox import Sandbox
from tests.helpers import db_compare as dbc
from tests.helpers.databases import database
from tests.reliability import dbkill
from tests.reliability.util import (
    assert_table_equals_sandbox,
    clean_env,
    last_line,
    run_pipe,
    tap_config,
)

DEBUG_ENV = {"LOGLEVEL": "DEBUG", "TAP_CANVAS_DATA2_LOGLEVEL": "DEBUG",
             "TARGET_DAP_SQL_LOGLEVEL": "DEBUG"}
CLIENT_SECRET = "cs-" + uuid.uuid4().hex
PASSWORD = "Pw-" + uuid.uuid4().hex + "!#"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(seed=43, rows={"users": 400, "accounts": 20}, rows_per_object=100,
                 client_secret=CLIENT_SECRET, job_polls=2) as s:
        yield s


@contextmanager
def db_with_password(dialect: str, tmp: str):
    """A fresh database and a login role/user with a password; URL with the password."""
    user = "rel_" + uuid.uuid4().hex[:10]
    with database(dialect, tmp) as admin_url:
        name = admin_url.rsplit("/", 1)[-1]
        conn = dbkill.admin_connection(admin_url)
        cur = conn.cursor()
        try:
            if dialect == "postgresql":
                cur.execute(f"CREATE ROLE {user} LOGIN PASSWORD %s", (PASSWORD,))
                cur.execute(f'ALTER DATABASE "{name}" OWNER TO {user}')
                host = "127.0.0.1:5432"
            else:
                for h in ("%", "localhost"):
                    cur.execute(f"CREATE USER '{user}'@'{h}' IDENTIFIED BY %s", (PASSWORD,))
                    cur.execute(f"GRANT ALL ON `{name}`.* TO '{user}'@'{h}'")
                host = "127.0.0.1:3306"
            scheme = "postgresql" if dialect == "postgresql" else "mysql"
            yield f"{scheme}://{user}:{quote(PASSWORD, safe='')}@{host}/{name}", admin_url
        finally:
            if dialect == "postgresql":
                cur.execute(f'ALTER DATABASE "{name}" OWNER TO postgres')
                dbkill.kill_all(admin_url)
            cur.close()
            conn.close()
        # the database is dropped by database(); then the role
    conn = dbkill.admin_connection(admin_url)
    cur = conn.cursor()
    if dialect == "postgresql":
        cur.execute(f"DROP ROLE IF EXISTS {user}")
    else:
        for h in ("%", "localhost"):
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{h}'")
    cur.close()
    conn.close()


def secrets_of(sb, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """name -> secret text that must appear nowhere."""
    out = {"client secret": sb.client_secret, "db password": PASSWORD,
           "db password (url-encoded)": quote(PASSWORD, safe="")}
    issued = sb.issued_secrets()
    for i, token in enumerate(issued["tokens"]):
        out[f"access token {i}"] = token
        out[f"access token {i} signature"] = token.rsplit(".", 1)[-1]
    for i, url in enumerate(issued["urls"]):
        query = urlsplit(url).query
        assert query, f"pre-signed URL without a signature: {url}"
        out[f"url {i} query"] = query
        for k, v in parse_qsl(query):
            if len(v) >= 12:
                out[f"url {i} {k}"] = v
    for i, s in enumerate(extra):
        out[f"extra {i}"] = s
    return out


def assert_no_leak(texts: dict[str, str], secrets: dict[str, str]) -> None:
    for where, text in texts.items():
        for name, secret in secrets.items():
            assert secret not in text, f"{name} leaked in {where}: ...{_around(text, secret)}..."


def _around(text: str, secret: str) -> str:
    i = text.index(secret)
    return text[max(0, i - 120): i + len(secret) + 40].replace(secret, "<SECRET>")


def _outputs(r) -> dict[str, str]:
    import json

    return {"tap stderr": r.tap_stderr, "target stderr": r.target_stderr,
            "target stdout": "\n".join(json.dumps(s) for s in r.states)}


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_debug_pipe_with_faults_leaks_nothing(sb, tmp_path, dialect):
    with db_with_password(dialect, str(tmp_path)) as (url, _admin):
        # faults that make the client log: retries, a re-login after expiry, URL renewal
        sb.inject("http_500", path="/dap/", count=2)
        sb.inject("url_expire", count=2)
        sb.inject("drop_mid_download", path="/objects", count=1)

        def expire_mid_run():
            base = sb.stats()["jobs_created"]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and sb.stats()["jobs_created"] == base:
                time.sleep(0.005)
            sb.inject("token_expire")
        th = threading.Thread(target=expire_mid_run, daemon=True)
        th.start()
        r = run_pipe(tmp_path, tap_config(sb, tables=["users"]),
                     {"connection_string": url}, env=clean_env(**DEBUG_ENV))
        th.join(5)
        assert r.ok, r.describe()
        assert "DEBUG" in r.tap_stderr and "DEBUG" in r.target_stderr, r.describe()
        assert sb.stats()["logins"] >= 2, "the token fault did not force a re-login"
        assert len(sb.issued_secrets()["urls"]) > 0
        assert_table_equals_sandbox(url, sb, "canvas", "users")
        assert_no_leak(_outputs(r), secrets_of(sb))
        # the database kept no secret either (meta rows hold schemas and timestamps only)
        assert_no_leak({"table_sync": repr(dbc.meta_rows(url))}, secrets_of(sb))


def test_failure_paths_leak_nothing(sb, tmp_path):
    """Bad DAP credentials, a database that is unreachable, one that refuses the password,
    and a malformed connection string: every error at DEBUG, none with a secret."""
    env = clean_env(**DEBUG_ENV)
    wrong_secret = "wrong-" + uuid.uuid4().hex
    outputs: dict[str, str] = {}
    # bad DAP credentials (the wrong secret is a secret too)
    r = run_pipe(tmp_path, tap_config(sb, tables=["users"], client_secret=wrong_secret),
                 {"connection_string": f"sqlite:///{tmp_path}/x.db"}, env=env)
    assert r.tap_rc != 0 and "credentials" in last_line(r.tap_stderr), r.describe()
    outputs.update({f"bad credentials: {k}": v for k, v in _outputs(r).items()})
    # unreachable databases, with a password in the URL
    for url in (f"postgresql://someone:{quote(PASSWORD, safe='')}@127.0.0.1:1/nodb",
                f"mysql://someone:{quote(PASSWORD, safe='')}@127.0.0.1:1/nodb",
                f"oracle://someone:{quote(PASSWORD, safe='')}@127.0.0.1:1/nodb",
                f"postgresql://someone:{quote(PASSWORD, safe='')}@127.0.0.1:5432"):
        r = run_pipe(tmp_path, tap_config(sb, tables=["users"]), {"connection_string": url},
                     env=env)
        assert r.target_rc != 0, r.describe()
        assert "target-dap-sql: error:" in last_line(r.target_stderr), r.describe()
        outputs.update({f"{url.split(':')[0]} {k}": v for k, v in _outputs(r).items()})
    # MariaDB checks passwords: a wrong one is refused, and not printed
    with db_with_password("mysql", str(tmp_path)) as (url, _admin):
        bad = url.replace(quote(PASSWORD, safe=""), quote(PASSWORD + "x", safe=""))
        r = run_pipe(tmp_path, tap_config(sb, tables=["users"]), {"connection_string": bad},
                     env=env)
        assert r.target_rc != 0, r.describe()
        assert "target-dap-sql: error:" in last_line(r.target_stderr), r.describe()
        outputs.update({f"wrong mysql password {k}": v for k, v in _outputs(r).items()})
    assert_no_leak(outputs, secrets_of(sb, extra=(wrong_secret, PASSWORD + "x")))
