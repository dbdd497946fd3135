"""Kill the database connections of a test database from another connection (simulates a
lost connection or a database restart without touching the server other tests use)."""

from __future__ import annotations

import re
import time

from tests.helpers import db_compare as dbc
from tests.helpers.databases import MYSQL_ADMIN_URL, PG_ADMIN_URL

LOAD_SQL = re.compile(r"(?i)\b(copy|insert|merge|replace|update|delete|load)\b")


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def sessions(url: str, admin_conn, loading_only: bool) -> list[int]:
    """Connection ids of other sessions on the test database (busy loading, if asked)."""
    name = _dbname(url)
    cur = admin_conn.cursor()
    try:
        if dbc.dialect_of(url) == "postgresql":
            cur.execute("SELECT pid, state, query FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid()", (name,))
            rows = cur.fetchall()
            if loading_only:
                return [r[0] for r in rows if r[1] == "active" and LOAD_SQL.search(r[2] or "")]
            return [r[0] for r in rows]
        cur.execute("SELECT ID, COMMAND, INFO FROM information_schema.PROCESSLIST "
                    "WHERE DB = %s AND ID <> CONNECTION_ID()", (name,))
        rows = cur.fetchall()
        if loading_only:
            return [r[0] for r in rows if r[1] == "Query" and LOAD_SQL.search(str(r[2] or ""))]
        return [r[0] for r in rows]
    finally:
        cur.close()


def kill(url: str, admin_conn, ids: list[int]) -> int:
    cur = admin_conn.cursor()
    n = 0
    try:
        for i in ids:
            try:
                if dbc.dialect_of(url) == "postgresql":
                    cur.execute("SELECT pg_terminate_backend(%s)", (i,))
                else:
                    cur.execute(f"KILL {int(i)}")
                n += 1
            except Exception:  # noqa: BLE001 - the session may be gone already
                pass
    finally:
        cur.close()
    return n


def admin_connection(url: str):
    if dbc.dialect_of(url) == "postgresql":
        import psycopg2

        conn = psycopg2.connect(PG_ADMIN_URL)
        conn.autocommit = True
        return conn
    from urllib.parse import urlsplit

    import mysql.connector

    p = urlsplit(MYSQL_ADMIN_URL)
    return mysql.connector.connect(host=p.hostname, port=p.port or 3306,
                                   user=p.username or "root", password=p.password or "",
                                   autocommit=True)


def kill_when_loading(url: str, still_running, timeout: float = 60) -> int:
    """Wait until a session of the database runs a data-loading statement, kill it.
    Returns how many sessions were killed (0: the run ended first)."""
    conn = admin_connection(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and still_running():
            ids = sessions(url, conn, loading_only=True)
            if ids:
                return kill(url, conn, ids)
            time.sleep(0.005)
        return 0
    finally:
        conn.close()


def kill_all(url: str) -> int:
    """Terminate every session of the test database (a 'restart' as clients see it)."""
    conn = admin_connection(url)
    try:
        return kill(url, conn, sessions(url, conn, loading_only=False))
    finally:
        conn.close()
