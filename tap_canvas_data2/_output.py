"""One buffered binary stdout for every Singer message the tap writes.

singer-sdk's default writer serialises with simplejson and flushes stdout after every
message. Here every message goes through one shared byte buffer:

- RECORD lines are appended by the streams' fast path (``append``) as pre-built bytes;
- SCHEMA / STATE / ACTIVATE_VERSION (and, on the fallback path, SDK RECORDs) arrive
  through :class:`FastSingerWriter.write_message`, are appended to the same buffer and
  the buffer is flushed right away, so message order is always the order of the calls.

``sys.stdout`` is looked up on every flush (tests redirect it).
"""

from __future__ import annotations

import datetime
import decimal
import sys
import typing as t

import orjson
from singer_sdk.singerlib.encoding.base import GenericSingerWriter

FLUSH_BYTES = 1 << 20  # flush the record buffer when it holds about 1 MiB


def _default(obj: t.Any) -> t.Any:
    if isinstance(obj, decimal.Decimal):
        if obj == obj.to_integral_value() and obj.as_tuple().exponent >= 0:
            return int(obj)
        return float(obj)
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if hasattr(obj, "value"):  # enums (e.g. message types)
        return obj.value
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: t.Any) -> bytes:
    """orjson.dumps with a fallback for Decimal and friends."""
    return orjson.dumps(obj, default=_default)


class OutputBuffer:
    """Process-wide buffer in front of stdout."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def flush(self) -> None:
        if self.buf:
            out = sys.stdout
            binary = getattr(out, "buffer", None)
            if binary is not None:
                out.flush()  # anything written to the text layer first keeps its place
                binary.write(self.buf)
                binary.flush()
            else:  # e.g. io.StringIO
                out.write(self.buf.decode("utf-8"))
                out.flush()
            self.buf.clear()
        else:
            sys.stdout.flush()

    def write_line(self, line: bytes) -> None:
        self.buf += line
        self.buf += b"\n"
        self.flush()


OUTPUT = OutputBuffer()


class FastSingerWriter(GenericSingerWriter[bytes, t.Any]):
    """SDK message writer on top of :data:`OUTPUT` (orjson, one flush per message)."""

    def serialize_message(self, message: t.Any) -> bytes:  # noqa: PLR6301
        return dumps(message.to_dict())

    def write_message(self, message: t.Any) -> None:
        OUTPUT.write_line(self.format_message(message))
