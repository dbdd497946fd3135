"""gunzip_chunks: the streaming inflate of downloaded objects (ISA-L when installed)."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from tap_canvas_data2.api import download
from tap_canvas_data2.api.download import TruncatedGzipError, gunzip_chunks


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_isal_inflate_is_used():
    assert download._inflate is not zlib  # the dependency is installed: the fast inflate


@pytest.mark.parametrize("size", [1, 7, 65536])
def test_members_and_chunk_sizes(size):
    a, b = os.urandom(50_000) + b"x" * 300_000, b"second member\n" * 1000
    stream = gzip.compress(a) + gzip.compress(b)
    out = list(gunzip_chunks(_pieces(stream, size), max_chunk=4096))
    assert b"".join(out) == a + b
    assert max(map(len, out)) <= 4096


def test_truncated_stream():
    stream = gzip.compress(b"abc" * 100_000)
    with pytest.raises(TruncatedGzipError):
        b"".join(gunzip_chunks([stream[:-20]]))


def test_corrupt_stream():
    stream = bytearray(gzip.compress(os.urandom(10_000)))
    stream[20:40] = b"\xff" * 20
    with pytest.raises((zlib.error, download._inflate.error)):
        b"".join(gunzip_chunks([bytes(stream)]))
