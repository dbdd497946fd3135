"""Exceptions of target-dap-sql. Every message is one line and says what to do."""

from __future__ import annotations


class TargetError(Exception):
    """A fatal, user-facing error: printed as one line, the process exits non-zero."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(TargetError):
    """Bad or missing settings (connection string, driver)."""


class ConnectError(TargetError):
    """The database cannot be reached or refuses the login."""


class MalformedInput(TargetError):
    """The Singer input is not a valid message stream (bad JSON, missing SCHEMA, ...)."""


class BadRecord(TargetError):
    """A record the database cannot store (too long, out of range, not in the enum, ...)."""


class SchemaError(TargetError):
    """A schema that cannot be turned into (or applied to) a table."""


class RejectedByDatabase(BadRecord):
    """A value the database refused while a batch was applied (names table, column, key)."""
