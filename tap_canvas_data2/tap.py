"""TapCanvasData2: Instructure Canvas Data 2 (DAP API) as a Singer tap."""

from __future__ import annotations

import os
import typing as t

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from tap_canvas_data2 import schema as dap_schema
from tap_canvas_data2._output import OUTPUT, FastSingerWriter, dumps
from tap_canvas_data2.streams import DapTableStream

if t.TYPE_CHECKING:
    from tap_canvas_data2._dap import DapSession

DEFAULT_BASE_URL = "https://api-gateway.instructure.com"
SANDBOX = "sandbox"

#: setting -> environment variable read when the setting is not given (as the dap CLI does)
ENV_FALLBACKS = {
    "client_id": "DAP_CLIENT_ID",
    "client_secret": "DAP_CLIENT_SECRET",
    "base_url": "DAP_API_URL",
}

#: defaults applied when a setting is absent (the SDK does not apply JSON-schema defaults)
DEFAULTS: dict[str, t.Any] = {
    "base_url": DEFAULT_BASE_URL,
    "namespaces": ["canvas"],
    "tables": ["all"],
    "full_refresh": False,
    "format": "tsv",
    "download_concurrency": 4,
    "jobs_per_minute": 5,
}

class TapCanvasData2(Tap):
    """Singer tap for Instructure Canvas Data 2 (the DAP query API).

    One stream per DAP table (`<namespace>-<table>`). The first sync of a table takes a
    snapshot (then ACTIVATE_VERSION); later syncs run incremental queries from the bookmark
    (the previous job's `at`/`until`). Deletes are records with `_sdc_deleted_at`.
    """

    name = "tap-canvas-data2"
    package_name = "tap-canvas-data2"
    dynamic_catalog = True
    message_writer_class = FastSingerWriter

    capabilities: t.ClassVar[list] = [
        TapCapabilities.CATALOG,
        TapCapabilities.DISCOVER,
        TapCapabilities.STATE,
        TapCapabilities.ACTIVATE_VERSION,
        TapCapabilities.TEST,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "client_id",
            th.StringType,
            description="DAP client ID (Instructure Identity Services key). "
            "Env fallback: DAP_CLIENT_ID.",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            description="DAP client secret. Env fallback: DAP_CLIENT_SECRET.",
        ),
        th.Property(
            "base_url",
            th.StringType,
            default=DEFAULT_BASE_URL,
            description="DAP API base URL. Env fallback: DAP_API_URL. The special value "
            "'sandbox' starts a local simulated DAP API in-process (demos).",
        ),
        th.Property(
            "namespaces",
            th.ArrayType(th.StringType),
            default=["canvas"],
            description="DAP namespaces to replicate (canvas, canvas_logs, catalog, "
            "new_quizzes).",
        ),
        th.Property(
            "tables",
            th.ArrayType(th.StringType),
            default=["all"],
            description="Tables to replicate: names ('users'), qualified names "
            "('canvas.users') or ['all'].",
        ),
        th.Property(
            "since",
            th.DateTimeType,
            description="For streams without a bookmark: start with an incremental query "
            "from this time instead of a snapshot (like `dap incremental --since`).",
        ),
        th.Property(
            "until",
            th.DateTimeType,
            description="Upper bound of incremental queries (default: latest data).",
        ),
        th.Property(
            "full_refresh",
            th.BooleanType,
            default=False,
            description="Take a snapshot even when a bookmark exists; the snapshot replaces "
            "the table (ACTIVATE_VERSION).",
        ),
        th.Property(
            "format",
            th.StringType,
            default="tsv",
            allowed_values=["tsv", "jsonl", "csv"],
            description="Object format requested from DAP.",
        ),
        th.Property(
            "temp_dir",
            th.StringType,
            description="Spool downloaded objects to this directory instead of memory.",
        ),
        th.Property(
            "download_concurrency",
            th.IntegerType,
            default=4,
            description="Objects downloaded in parallel.",
        ),
        th.Property(
            "jobs_per_minute",
            th.NumberType,
            default=5,
            description="Query jobs started per minute at most (DAP allows 5).",
        ),
        th.Property(
            "poll_interval_max",
            th.NumberType,
            description="Longest wait in seconds between polls of a running job.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            description="Retries of a failed HTTP request (429, 5xx, dropped connection).",
        ),
        th.Property(
            "backoff_max",
            th.NumberType,
            description="Longest backoff in seconds between retries.",
        ),
    ).to_dict()

    # ------------------------------------------------------------------ command line

    @classmethod
    def get_singer_command(cls) -> t.Any:
        """The SDK command, with every failure as one stderr line and exit code 1."""
        from tap_canvas_data2._cli import one_line_command  # noqa: PLC0415
        from tap_canvas_data2.api.errors import DAPError  # noqa: PLC0415

        return one_line_command(super().get_singer_command(), expected=(DAPError,))

    @classmethod
    def cb_config(cls, ctx: t.Any, param: t.Any, value: tuple[str, ...]) -> t.Any:
        """Read ``--config`` files; a missing or malformed one is a one-line error."""
        from tap_canvas_data2._cli import read_config_files  # noqa: PLC0415

        read_config_files(value)
        return super().cb_config(ctx, param, value)

    # ------------------------------------------------------------------ config

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Fill settings from the dap environment variables and defaults, then validate.

        Missing credentials are reported here, one line naming the setting and its
        environment variable (so `--discover`, `--test` and syncs fail early and clearly).
        """
        cfg = self._config
        for setting, env in ENV_FALLBACKS.items():
            if cfg.get(setting) in (None, "") and os.environ.get(env):
                cfg[setting] = os.environ[env]
        for setting, default in DEFAULTS.items():
            if cfg.get(setting) is None:
                cfg[setting] = list(default) if isinstance(default, list) else default
        errors = super()._validate_config(raise_errors=raise_errors)
        for setting in ("since", "until"):  # the SDK does not check "format": "date-time"
            value = cfg.get(setting)
            if value not in (None, ""):
                from tap_canvas_data2.streams import to_dap_timestamp  # noqa: PLC0415

                try:
                    to_dap_timestamp(value)
                except (TypeError, ValueError):
                    errors.append(f"setting '{setting}' must be an ISO 8601 date-time such as "
                                  f"2024-01-31T00:00:00Z, got {value!r}")
        if errors and raise_errors:
            raise ConfigValidationError(
                "Config validation failed", errors=errors, schema=self.config_jsonschema
            )
        if cfg.get("base_url") != SANDBOX:
            missing = [
                f"missing setting '{s}' (or environment variable {ENV_FALLBACKS[s]})"
                for s in ("client_id", "client_secret")
                if not cfg.get(s)
            ]
            if missing:
                if raise_errors:
                    raise ConfigValidationError(
                        "Config validation failed", errors=missing, schema=self.config_jsonschema
                    )
                errors += missing
        return errors

    # ------------------------------------------------------------------ DAP access

    @property
    def dap(self) -> DapSession:
        """The DAP session (client + downloader), created on first use."""
        session = getattr(self, "_dap_session", None)
        if session is None:
            from tap_canvas_data2._dap import DapSession  # noqa: PLC0415

            session = DapSession(dict(self.config))
            self._dap_session = session
        return session

    def _wanted(self, namespace: str, tables: list[str]) -> list[str]:
        wanted = [str(x) for x in self.config.get("tables") or ["all"]]
        if any(w.lower() == "all" for w in wanted):
            return list(tables)
        names = set()
        for w in wanted:
            ns, dot, tbl = w.partition(".")
            if dot:
                if ns == namespace:
                    names.add(tbl)
            else:
                names.add(w)
        return [tbl for tbl in tables if tbl in names]

    def _check_tables_exist(self, listed: dict[str, list[str]]) -> None:
        """Every table named in the ``tables`` setting exists in a configured namespace;
        else one error naming the unknown tables (a typo must not sync nothing silently)."""
        wanted = [str(x) for x in self.config.get("tables") or ["all"]]
        if any(w.lower() == "all" for w in wanted):
            return
        unknown = []
        for w in wanted:
            ns, dot, tbl = w.partition(".")
            if dot and ns in listed:
                found = tbl in listed[ns]
            else:
                found = not dot and any(w in tables for tables in listed.values())
            if not found:
                unknown.append(w)
        if unknown:
            from tap_canvas_data2.api.errors import NotFoundError  # noqa: PLC0415

            known = "; ".join(
                f"{ns}: {', '.join(tables[:40])}{', ...' if len(tables) > 40 else ''}"
                for ns, tables in listed.items())
            raise NotFoundError(
                f"unknown table(s) in the 'tables' setting: {', '.join(unknown)}; fix the "
                f"setting (namespace[s] {', '.join(listed)} have {known})", kind="table",
                id=unknown[0])

    def discover_streams(self) -> list[DapTableStream]:
        """One stream per DAP table: one list call per namespace, one schema call per table.

        Never starts a query job. With an input catalog, only the tables selected in it get
        their schema fetched.
        """
        selected_in_catalog: set[str] | None = None
        if self.input_catalog is not None:
            selected_in_catalog = set()
            for entry in self.input_catalog.streams:
                md = entry.metadata.resolve_selection() if entry.metadata else None
                if md is None or md.get((), False):
                    selected_in_catalog.add(entry.tap_stream_id)
        streams: list[DapTableStream] = []
        listed: dict[str, list[str]] = {}
        for namespace in self.config.get("namespaces") or ["canvas"]:
            tables = listed[namespace] = self.dap.list_tables(namespace)
            for table in self._wanted(namespace, tables):
                name = dap_schema.stream_name(namespace, table)
                if selected_in_catalog is not None and name not in selected_in_catalog:
                    continue
                schema, version = self.dap.get_schema(namespace, table)
                streams.append(
                    DapTableStream(
                        tap=self,
                        namespace=namespace,
                        table=table,
                        dap_schema=schema,
                        schema_version=version,
                    )
                )
        self._check_tables_exist(listed)
        return streams

    @property
    def catalog_dict(self) -> dict:
        """The catalog, with `x-dap` in each schema and the DAP schema version in the
        stream metadata (`schema-version`, `dap-namespace`, `dap-table`)."""
        result = super().catalog_dict
        for entry in result.get("streams", []):
            stream = self.streams.get(entry.get("tap_stream_id"))
            if not isinstance(stream, DapTableStream):
                continue
            entry.setdefault("schema", {})["x-dap"] = stream.schema["x-dap"]
            for md in entry.get("metadata", []):
                if md.get("breadcrumb") == []:
                    md["metadata"]["schema-version"] = stream.schema_version
                    md["metadata"]["dap-namespace"] = stream.namespace
                    md["metadata"]["dap-table"] = stream.table
        return result

    # ------------------------------------------------------------------ connection test

    def run_connection_test(self) -> bool:  # type: ignore[override]
        """Authenticate and list the tables of each namespace. Starts no query job."""
        for namespace in self.config.get("namespaces") or ["canvas"]:
            tables = self.dap.list_tables(namespace)
            self.logger.info(
                "Connection OK: namespace '%s' has %d tables", namespace, len(tables)
            )
        return True

    # ------------------------------------------------------------------ state

    def write_state_now(self) -> None:
        """Emit the cumulative STATE (every stream's bookmark) right now."""
        OUTPUT.write_line(dumps({"type": "STATE", "value": self.state}))
