"""Connection strings in dap's URL forms, lazy driver import, secret redaction.

Accepted forms (the same as ``dap --connection-string`` / ``DAP_CONNECTION_STRING``)::

    postgresql://user:pass@host:port/db[?sslmode=require]
    mysql://user:pass@host:port/db          (also mariadb://)
    sqlite:///relative/or/absolute/path.db  (sqlite:////abs/path.db also works)

Passwords never appear in messages: use :func:`redact` / :attr:`ConnectionInfo.redacted`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from types import ModuleType
from urllib.parse import parse_qsl, unquote, urlsplit

from target_dap_sql.errors import ConfigError

DEFAULT_CONNECTION_STRING = "sqlite:///canvas_data2.db"
ENV_VAR = "DAP_CONNECTION_STRING"

_SCHEMES = {
    "postgresql": "postgresql", "postgres": "postgresql", "postgresql+psycopg2": "postgresql",
    "mysql": "mysql", "mariadb": "mysql", "mysql+mysqlconnector": "mysql",
    "sqlite": "sqlite",
}
_DRIVERS = {
    "postgresql": ("psycopg2", "PostgreSQL", "psycopg2", "postgresql"),
    "mysql": ("mysql.connector", "MySQL", "mysql-connector-python", "mysql"),
    "sqlite": ("sqlite3", "SQLite", "sqlite3", ""),
}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


@dataclass(frozen=True)
class ConnectionInfo:
    """A parsed connection string."""

    dialect: str  # postgresql | mysql | sqlite
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    path: str = ""  # sqlite only
    params: tuple[tuple[str, str], ...] = ()

    @property
    def redacted(self) -> str:
        """The URL with the password replaced by ``***`` (safe for logs and errors)."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        auth = self.user + (":***" if self.password else "")
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return (f"{self.dialect}://{auth + '@' if auth else ''}{self.host}:{self.port}"
                f"/{self.database}{'?' + query if query else ''}")

    @property
    def address(self) -> str:
        """``host:port`` (or the SQLite file path)."""
        return self.path if self.dialect == "sqlite" else f"{self.host}:{self.port}"

    def param(self, name: str, default: str | None = None) -> str | None:
        """A query parameter of the URL (``sslmode`` ...)."""
        for key, value in self.params:
            if key == name:
                return value
        return default


def redact(conn_str: str) -> str:
    """Return ``conn_str`` with any password masked; never raises."""
    try:
        return parse_connection_string(conn_str).redacted
    except Exception:  # noqa: BLE001 - a message helper must not fail
        parts = urlsplit(conn_str)
        if parts.password:
            return conn_str.replace(":" + parts.password + "@", ":***@")
        return conn_str


def parse_connection_string(conn_str: str) -> ConnectionInfo:
    """Parse a dap-style connection URL into :class:`ConnectionInfo`."""
    if not conn_str or "://" not in conn_str:
        raise ConfigError(
            "connection_string must look like postgresql://user:pass@host:port/db, "
            "mysql://user:pass@host:port/db or sqlite:///path.db")
    scheme = conn_str.split("://", 1)[0].lower()
    dialect = _SCHEMES.get(scheme)
    if dialect is None:
        raise ConfigError(f"unsupported database scheme {scheme!r}: use postgresql://, "
                          "mysql:// (or mariadb://) or sqlite:///")
    if dialect == "sqlite":
        path = conn_str.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        path = unquote(path.split("?", 1)[0])
        if not path:
            raise ConfigError("sqlite connection string needs a file: sqlite:///path/to/file.db")
        return ConnectionInfo(dialect="sqlite", path=path)
    parts = urlsplit(conn_str)
    try:
        port = parts.port or _DEFAULT_PORTS[dialect]
    except ValueError as exc:
        raise ConfigError(f"bad port in connection string {redact(conn_str)}") from exc
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigError(f"connection string {redact(conn_str)} names no database "
                          f"(…/<database> at the end)")
    return ConnectionInfo(
        dialect=dialect, host=parts.hostname or "localhost", port=port,
        user=unquote(parts.username or ""), password=unquote(parts.password or ""),
        database=database, params=tuple(parse_qsl(parts.query)),
    )


def resolve_connection_string(config: dict | None) -> str:
    """Setting ``connection_string``, else env ``DAP_CONNECTION_STRING``, else the default."""
    value = (config or {}).get("connection_string") or os.environ.get(ENV_VAR)
    return value or DEFAULT_CONNECTION_STRING


def import_driver(dialect: str) -> ModuleType:
    """Import the DB-API driver of ``dialect`` or fail with the pip command to install it."""
    module, label, package, extra = _DRIVERS[dialect]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"missing dependency: connecting to {label} needs {package}; "
            f"run: pip install 'tap-canvas-data2[{extra}]'") from exc
