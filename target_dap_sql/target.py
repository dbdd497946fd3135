"""``TargetDapSql``: the singer-sdk Target shell (CLI, config, --about) around a fast loop.

The SDK's per-record pipeline (validation, date parsing, ``_sdc_*`` stripping, sinks) is
bypassed: :meth:`TargetDapSql.listen` hands the raw input to :class:`loading.Loader`.
"""

from __future__ import annotations

import io
import sys
from typing import IO, Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities

from target_dap_sql.connection import parse_connection_string, resolve_connection_string
from target_dap_sql.dialects import Settings, make_dialect
from target_dap_sql.errors import TargetError
from target_dap_sql.heap import steady_heap
from target_dap_sql.loading import Loader


class TargetDapSql(Target):
    """Singer target that keeps the same database as ``dap initdb`` / ``dap syncdb``."""

    name = "target-dap-sql"
    package_name = "tap-canvas-data2"
    capabilities = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.ACTIVATE_VERSION,
        TargetCapabilities.HARD_DELETE,
        TargetCapabilities.TARGET_SCHEMA,
    ]
    config_jsonschema = th.PropertiesList(
        th.Property(
            "connection_string", th.StringType, secret=True,
            description="Database URL as for dap: postgresql://user:pass@host:port/db, "
                        "mysql://user:pass@host:port/db (or mariadb://), sqlite:///path.db. "
                        "Defaults to env DAP_CONNECTION_STRING, else sqlite:///canvas_data2.db.",
        ),
        th.Property("batch_size_rows", th.IntegerType, default=100000,
                    description="Keys per stream buffered before a flush (one transaction)."),
        th.Property("validate_records", th.BooleanType, default=False,
                    description="Accepted for compatibility; records are checked by the "
                                "renderer and the database, not by JSON-schema validation."),
        th.Property("default_target_schema", th.StringType,
                    description="Namespace for streams without x-dap and without a "
                                "'<namespace>-' prefix (default: public)."),
        th.Property("mysql_fractional_seconds", th.BooleanType, default=True,
                    description="MySQL: datetime(6)/time(6) keep microseconds (dap uses "
                                "datetime and drops them). false = exactly dap's types."),
    ).to_dict()

    @classmethod
    def get_singer_command(cls) -> Any:
        """The SDK command, with every failure as one stderr line and exit code 1."""
        from tap_canvas_data2._cli import one_line_command  # noqa: PLC0415

        steady_heap()
        return one_line_command(super().get_singer_command(), expected=(TargetError,))

    @classmethod
    def cb_config(cls, ctx: Any, param: Any, value: tuple[str, ...]) -> Any:
        """Read ``--config`` files; a missing or malformed one is a one-line error."""
        from tap_canvas_data2._cli import read_config_files  # noqa: PLC0415

        read_config_files(value)
        return super().cb_config(ctx, param, value)

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """No SDK built-in settings: the SDK record pipeline they configure is not used."""

    def listen(self, file_input: IO[str] | None = None) -> None:  # type: ignore[override]
        """Run the fast loader on stdin (or ``--input``); exit non-zero on errors."""
        config: dict[str, Any] = dict(self.config)
        settings = Settings(mysql_fractional_seconds=bool(
            config.get("mysql_fractional_seconds", True)))
        source: Any
        if file_input is None:
            source = sys.stdin.buffer
        elif isinstance(file_input, io.TextIOWrapper):
            source = file_input.buffer
        else:
            source = file_input
        dialect = None
        loader = None
        try:
            info = parse_connection_string(resolve_connection_string(config))
            dialect = make_dialect(info, settings)
            loader = Loader(dialect, batch_size_rows=int(config.get("batch_size_rows") or 100000),
                            default_schema=config.get("default_target_schema"))
            loader.run(source)
        except TargetError as exc:
            if dialect is not None and _connection_lost(exc):
                _fail(_lost_message(info, exc), 1)
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; nothing after the last emitted STATE was kept", 130)
        except Exception as exc:  # noqa: BLE001 - one line, no traceback, non-zero exit
            if dialect is not None and _connection_lost(exc):
                _fail(_lost_message(info, exc), 1)
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _fail(f"unexpected {type(exc).__name__}: {text}", 2)
        finally:
            worker = getattr(loader, "_worker", None)
            if worker is not None:  # never roll back/close under a running background flush
                worker.join()
            if dialect is not None:
                dialect.close()


#: PostgreSQL SQLSTATE classes of a lost connection: 08 connection exception, 57P operator
#: intervention (pg_terminate_backend, shutdown, restart)
_PG_LOST = ("08", "57P")
#: MySQL/MariaDB client/server errors of a lost connection (gone away, lost during query,
#: connection killed, not available, server shutdown)
_MYSQL_LOST = {2006, 2013, 2055, 1927, 1053, 4031}


def _connection_lost(exc: BaseException) -> BaseException | None:
    """The driver error in ``exc``'s chain that means the database connection is gone."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        module = type(cur).__module__ or ""
        name = type(cur).__name__
        if module.startswith("psycopg2"):
            code = getattr(cur, "pgcode", None)
            if name == "InterfaceError" or (
                    name != "TransactionRollbackError" and isinstance(cur, Exception)
                    and any(k.__name__ == "OperationalError" for k in type(cur).__mro__)
                    and (code is None or code.startswith(_PG_LOST))):
                return cur
        elif module.startswith("mysql.connector"):
            if getattr(cur, "errno", None) in _MYSQL_LOST or \
                    "connection not available" in str(cur).lower():
                return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _lost_message(info: Any, exc: BaseException) -> str:
    driver = _connection_lost(exc) or exc
    text = " ".join((str(driver).strip().splitlines() or [type(driver).__name__])[0].split())
    return (f"lost the connection to the database at {info.address} (database "
            f"{info.database!r}) while loading: {text}; nothing after the last printed STATE "
            "was kept: check the database server, then run the sync again from that state")


def _fail(message: str, code: int) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"target-dap-sql: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


if __name__ == "__main__":
    TargetDapSql.cli()
