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
        try:
            info = parse_connection_string(resolve_connection_string(config))
            dialect = make_dialect(info, settings)
            loader = Loader(dialect, batch_size_rows=int(config.get("batch_size_rows") or 100000),
                            default_schema=config.get("default_target_schema"))
            loader.run(source)
        except TargetError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; nothing after the last emitted STATE was kept", 130)
        except Exception as exc:  # noqa: BLE001 - one line, no traceback, non-zero exit
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _fail(f"unexpected {type(exc).__name__}: {text}", 2)
        finally:
            if dialect is not None:
                dialect.close()


def _fail(message: str, code: int) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"target-dap-sql: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


if __name__ == "__main__":
    TargetDapSql.cli()
