"""Create and drop throw-away databases on the machine's real PostgreSQL and MariaDB.

Every test that needs a database gets a fresh one (named ``t_<random>``) and it is
dropped afterwards, so tests never see each other's tables. The servers are the ones
`.ci/run` starts: PostgreSQL on 127.0.0.1:5432 (trust auth) and MariaDB on
127.0.0.1:3306 (root, no password). Override with PG_ADMIN_URL / MYSQL_ADMIN_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

PG_ADMIN_URL = os.environ.get("PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN_URL = os.environ.get("MYSQL_ADMIN_URL", "mysql://root@127.0.0.1:3306/mysql")


def _with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path="/" + db).geturl()


@contextmanager
def postgres_database() -> Iterator[str]:
    """Yield the URL of a new, empty PostgreSQL database; drop it afterwards."""
    import psycopg2

    name = "t_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
    try:
        yield _with_db(PG_ADMIN_URL, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def mysql_database() -> Iterator[str]:
    """Yield the URL of a new, empty MariaDB/MySQL database (utf8mb4); drop it afterwards."""
    import mysql.connector

    parts = urlsplit(MYSQL_ADMIN_URL)
    name = "t_" + uuid.uuid4().hex[:12]
    admin = mysql.connector.connect(
        host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
        password=parts.password or "", autocommit=True,
    )
    cur = admin.cursor()
    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield _with_db(MYSQL_ADMIN_URL, name)
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.close()
        admin.close()


@contextmanager
def sqlite_database(tmp_dir: str) -> Iterator[str]:
    """Yield the URL of a new SQLite database file under tmp_dir."""
    yield "sqlite:///" + os.path.join(tmp_dir, "t_" + uuid.uuid4().hex[:12] + ".db")


@contextmanager
def database(dialect: str, tmp_dir: str) -> Iterator[str]:
    """Yield a fresh database URL of the given dialect: postgresql, mysql or sqlite."""
    if dialect == "postgresql":
        with postgres_database() as url:
            yield url
    elif dialect == "mysql":
        with mysql_database() as url:
            yield url
    elif dialect == "sqlite":
        with sqlite_database(tmp_dir) as url:
            yield url
    else:
        raise ValueError(dialect)
