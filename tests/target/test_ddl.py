"""Exact DDL per dialect, read back from the catalogs."""

from __future__ import annotations

from tests.target.helpers import DB, run_target


def test_postgresql_ddl(pg_url, tmp_path):
    assert run_target(pg_url, tmp_path, "snapshot_upsert").returncode == 0
    db = DB(pg_url)
    try:
        cols = db.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "col_description(a.attrelid, a.attnum), pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND "
            "d.adnum = a.attnum WHERE a.attrelid = 'canvas.accounts'::regclass AND "
            "a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
        assert [(c[0], c[1], c[2]) for c in cols] == [
            ("id", "bigint", True), ("name", "character varying(255)", False),
            ("workflow_state", "canvas.accounts__workflow_state", True),
            ("created_at", "timestamp without time zone", True), ("uuid", "uuid", False),
            ("i32", "integer", False), ("score", "double precision", False),
            ("ratio", "real", False), ("price", "numeric(5,2)", False),
            ("is_public", "boolean", True), ("settings", "jsonb", False),
            ("tags", "text[]", False), ("kinds", "canvas.accounts__kinds[]", False),
            ("born_on", "date", False), ("notes", "text", False), ("is_test", "boolean", True)]
        comments = {c[0]: c[3] for c in cols}
        assert comments["id"] == "Account ID." and comments["name"] == "Account name."
        assert comments["workflow_state"] == "Workflow state.\nSecond line of the description."
        assert comments["created_at"] is None
        assert cols[-1][4] == "false"
        assert db.query("SELECT obj_description('canvas.accounts'::regclass, 'pg_class')")[0][0] \
            == "Accounts\n\nAccounts of the institution.\nOne row per account."
        assert db.query("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE "
                        "conrelid = 'canvas.accounts'::regclass") == \
            [("pk_accounts", "PRIMARY KEY (id)")]
        labels = db.query("SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = "
                          "e.enumtypid WHERE t.typname = 'accounts__workflow_state' "
                          "ORDER BY e.enumsortorder")
        assert [r[0] for r in labels] == ["__dap_unspecified__", "active", "deleted"]
        meta = db.query("SELECT column_name, data_type, is_nullable, is_identity FROM "
                        "information_schema.columns WHERE table_schema = 'instructure_dap' "
                        "AND table_name = 'table_sync' ORDER BY ordinal_position")
        assert meta == [
            ("id", "bigint", "NO", "YES"), ("source_namespace", "character varying", "NO", "NO"),
            ("source_table", "character varying", "NO", "NO"),
            ("timestamp", "timestamp without time zone", "NO", "NO"),
            ("schema_version", "bigint", "NO", "NO"),
            ("target_schema", "character varying", "YES", "NO"),
            ("target_table", "character varying", "NO", "NO"),
            ("schema_description_format", "character varying", "NO", "NO"),
            ("schema_description", "text", "NO", "NO")]
    finally:
        db.close()
    # schema change: enum value appended, type widened, NOT NULL dropped
    assert run_target(pg_url, tmp_path, "schema_change").returncode == 0
    db = DB(pg_url)
    try:
        labels = db.query("SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = "
                          "e.enumtypid WHERE t.typname = 'accounts__workflow_state' "
                          "ORDER BY e.enumsortorder")
        assert [r[0] for r in labels][-1] == "suspended"
        types = dict(db.query("SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_schema = 'canvas' AND table_name = 'accounts'"))
        assert types["i32"] == "bigint" and types["name"] == "text"
        assert types["nickname"] == "character varying" and "ratio" not in types
    finally:
        db.close()


def test_mysql_ddl(mysql_url, tmp_path):
    assert run_target(mysql_url, tmp_path, "snapshot_upsert").returncode == 0
    db = DB(mysql_url)
    try:
        cols = db.query("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_COMMENT, "
                        "COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                        "DATABASE() AND TABLE_NAME = 'canvas__accounts' ORDER BY "
                        "ORDINAL_POSITION")
        got = [(c[0], c[1].decode() if isinstance(c[1], bytes) else c[1], c[2]) for c in cols]
        assert got == [
            ("id", "bigint(20)", "NO"), ("name", "varchar(255)", "YES"),
            ("workflow_state", "enum('__dap_unspecified__','active','deleted')", "NO"),
            ("created_at", "datetime(6)", "NO"), ("uuid", "binary(16)", "YES"),
            ("i32", "int(11)", "YES"), ("score", "double", "YES"), ("ratio", "double", "YES"),
            ("price", "decimal(5,2)", "YES"), ("is_public", "tinyint(4)", "NO"),
            ("settings", "longtext", "YES"), ("tags", "longtext", "YES"),
            ("kinds", "longtext", "YES"), ("born_on", "date", "YES"),
            ("notes", "mediumtext", "YES"), ("is_test", "tinyint(4)", "NO")]
        comments = {c[0]: c[3] for c in cols}
        assert comments["workflow_state"] == "Workflow state."
        assert db.query("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'canvas__accounts'")[0][0] \
            == "Accounts"
        charset = db.query("SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM "
                           "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
                           "TABLE_NAME = 'canvas__accounts' AND COLUMN_NAME = 'workflow_state'")
        assert charset == [("ascii", "ascii_bin")]
        meta = db.query("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA FROM "
                        "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
                        "TABLE_NAME = 'instructure_dap__table_sync' ORDER BY ORDINAL_POSITION")
        assert [(m[0], m[1], m[2]) for m in meta] == [
            ("id", "bigint(20)", "NO"), ("source_namespace", "varchar(64)", "NO"),
            ("source_table", "varchar(64)", "NO"), ("timestamp", "datetime", "NO"),
            ("schema_version", "bigint(20)", "NO"), ("target_schema", "varchar(64)", "YES"),
            ("target_table", "varchar(64)", "NO"),
            ("schema_description_format", "varchar(64)", "NO"),
            ("schema_description", "mediumtext", "NO")]
        assert meta[0][3] == "auto_increment"
    finally:
        db.close()
    result = run_target(mysql_url, tmp_path, "snapshot_upsert")
    assert result.returncode == 0 and "DDL:" not in result.stderr.decode(), \
        "re-running the same schema must not ALTER anything"
