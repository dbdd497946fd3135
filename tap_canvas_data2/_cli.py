"""One-line errors for the singer-sdk command lines of the tap and the target.

The SDK prints a Python traceback for any exception (bad settings file, malformed --state,
a DAP error) and ends a settings validation failure with "Config validation failed". Here
every failure ends stderr with ONE line ``<plugin>: error: <what happened>; <what to do>``
and a non-zero exit; the traceback of an unexpected exception is logged at DEBUG only.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import typing as t

import click
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.plugin_base import SingerCommand


class UserError(Exception):
    """A fatal error whose message is already one line that says what to do."""


def read_config_files(paths: t.Iterable[str]) -> None:
    """Check every ``--config`` file is readable JSON (an object), else raise UserError."""
    for path in paths:
        if path == "ENV":
            continue
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise UserError(f"settings file {path!r} (--config) does not exist; "
                            "pass the path of a JSON settings file") from None
        except OSError as exc:
            raise UserError(f"cannot read settings file {path!r} (--config): "
                            f"{exc.strerror or exc}") from None
        except ValueError as exc:
            raise UserError(f"settings file {path!r} (--config) is not valid JSON ({exc}); "
                            "fix the file") from None
        if not isinstance(data, dict):
            raise UserError(f"settings file {path!r} (--config) must hold a JSON object "
                            "({\"setting\": value, ...})")


def _message(exc: BaseException) -> str:
    if isinstance(exc, ConfigValidationError):
        errors = "; ".join(" ".join(str(e).split()) for e in (exc.errors or [])) or str(exc)
        return f"invalid settings: {errors}; fix the --config file or environment variables"
    if isinstance(exc, BrokenPipeError):
        return "the output pipe was closed (the process reading stdout stopped; see its error)"
    if isinstance(exc, ValueError) and type(exc).__name__ == "JSONDecodeError":
        return f"malformed JSON in --state or --catalog ({exc}); fix or remove the file"
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return " ".join(text.split())


def _quiet_stdout() -> None:
    """Flush stdout; if the reader is gone, point fd 1 at /dev/null so that Python's exit
    flush does not print a second (traceback-like) message after ours."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed pipe must not hide the message
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except Exception:  # noqa: BLE001
            pass


class OneLineErrorCommand(SingerCommand):
    """A SingerCommand whose failures end in one stderr line and exit code 1.

    ``expected`` are exception classes whose message is printed as is; any other exception
    is printed as ``unexpected <Type>: <first line>`` (traceback at DEBUG level).
    """

    expected: tuple[type[BaseException], ...] = ()

    def invoke(self, ctx: click.Context) -> t.Any:  # noqa: ANN401
        logging.captureWarnings(capture=True)
        try:
            return click.Command.invoke(self, ctx)  # errors are ours, not the SDK hook's
        except BrokenPipeError as exc:  # click would exit 1 silently
            self.fail(exc)

    def main(self, *args: t.Any, **kwargs: t.Any) -> t.Any:  # noqa: ANN401
        try:
            return super().main(*args, **kwargs)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line
            self.fail(exc)

    def fail(self, exc: BaseException) -> t.NoReturn:
        """Print ``<name>: error: <message>`` as the last stderr line and exit 1."""
        known = (UserError, ConfigValidationError, BrokenPipeError, *self.expected)
        text = _message(exc)
        if not isinstance(exc, known) and type(exc).__name__ != "JSONDecodeError":
            self.logger.debug("traceback of the error below", exc_info=exc)
            text = f"unexpected {type(exc).__name__}: {text}"
        _quiet_stdout()
        sys.stderr.write(f"{self.name}: error: {text}\n")
        sys.stderr.flush()
        sys.exit(1)


def one_line_command(command: click.Command, expected: tuple[type[BaseException], ...] = ()
                     ) -> click.Command:
    """Turn the SDK's command into a OneLineErrorCommand (same params and callback)."""
    command.__class__ = type("OneLineErrors", (OneLineErrorCommand,), {"expected": expected})
    return command
