"""Dialects: PostgreSQL (psycopg2), MySQL/MariaDB (mysql-connector-python), SQLite (stdlib)."""

from __future__ import annotations

from target_dap_sql.connection import ConnectionInfo, parse_connection_string
from target_dap_sql.dialects.base import Dialect, Settings


def make_dialect(conn: str | ConnectionInfo, settings: Settings | None = None,
                 *, connect: bool = True) -> Dialect:
    """The dialect object for a connection string (connected unless ``connect=False``)."""
    info = parse_connection_string(conn) if isinstance(conn, str) else conn
    if info.dialect == "postgresql":
        from target_dap_sql.dialects.postgresql import PostgreSQLDialect as cls
    elif info.dialect == "mysql":
        from target_dap_sql.dialects.mysql import MySQLDialect as cls  # type: ignore[assignment]
    else:
        from target_dap_sql.dialects.sqlite import SQLiteDialect as cls  # type: ignore[assignment]
    dialect = cls(info, settings)
    if connect:
        dialect.connect()
    return dialect


__all__ = ["Dialect", "Settings", "make_dialect"]
