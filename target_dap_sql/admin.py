"""Database administration like ``dap listdb`` / ``dap dropdb``, and meta table -> Singer state.

These work on databases made by ``dap`` as well as by this target (same meta tables).
"""

from __future__ import annotations

from typing import Any

from target_dap_sql import meta
from target_dap_sql.dialects import Settings, make_dialect
from target_dap_sql.dialects.base import Dialect
from target_dap_sql.errors import TargetError


def _open(conn_str: str) -> Dialect:
    return make_dialect(conn_str, Settings())


def listdb(conn_str: str, *, count_rows: bool = True) -> list[dict[str, Any]]:
    """One dict per replicated table: namespace, table, target, rows, timestamp, schema_version.

    ``rows`` is ``SELECT COUNT(*)`` (None when ``count_rows`` is false or the table is
    missing); ``timestamp`` is the stored bookmark as ``YYYY-MM-DDThh:mm:ss[.ffffff]Z``.
    """
    d = _open(conn_str)
    try:
        out = []
        for row in meta.read_table_sync(d):
            ns, table = row["source_namespace"], row["source_table"]
            count = None
            if count_rows:
                try:
                    count = int(d.query(f"SELECT COUNT(*) FROM {d.ref(ns, table)}")[0][0])
                except Exception:  # noqa: BLE001 - table dropped by hand
                    d.rollback()
                    count = None
            out.append({"namespace": ns, "table": table,
                        "target": d.ref(ns, table).replace('"', ""), "rows": count,
                        "timestamp": meta.format_timestamp(row["timestamp"]),
                        "schema_version": int(row["schema_version"])})
        d.commit()
        return out
    finally:
        d.close()


def dropdb(conn_str: str, namespace: str, table: str) -> None:
    """Drop a replicated table and its table_sync row, like ``dap dropdb``.

    PostgreSQL enum types are kept (dap keeps them too; the next load reuses them).
    Raises :class:`TargetError` when the table has no table_sync row ("not initialized").
    """
    d = _open(conn_str)
    try:
        meta.ensure_meta_tables(d)
        if not meta.read_table_sync(d, namespace, table):
            raise TargetError(f"table {namespace}.{table} is not initialized (no table_sync "
                              "row); nothing dropped")
        meta.delete_table_sync(d, namespace, table)
        d.execute(f"DROP TABLE IF EXISTS {d.ref(namespace, table)}").close()
        d.commit()
    finally:
        d.close()


def state_from_meta(conn_str: str) -> dict[str, Any]:
    """Singer state built from table_sync, so a ``dap``-made database continues incrementally.

    ``{"bookmarks": {"<ns>-<table>": {"timestamp": "...Z", "schema_version": N}}}``
    """
    d = _open(conn_str)
    try:
        bookmarks: dict[str, Any] = {}
        for row in meta.read_table_sync(d):
            bookmarks[f"{row['source_namespace']}-{row['source_table']}"] = {
                "timestamp": meta.format_timestamp(row["timestamp"]),
                "schema_version": int(row["schema_version"]),
            }
        d.commit()
        return {"bookmarks": bookmarks}
    finally:
        d.close()
