"""The target's C record path (``_rows``) gives exactly the dialect renderers' load rows.

Every RECORD line the C path accepts must give the key, row bytes and version that
``orjson.loads`` + the dialect's renderer give (PostgreSQL COPY csv, MySQL LOAD DATA text);
the lines it declines (None) take that Python path in the loader. Checked on the tap's real
output for every sandbox table (snapshot and incremental) and on hand-made hard cases.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess

import orjson
import pytest

from target_dap_sql import _rows
from target_dap_sql.connection import parse_connection_string
from target_dap_sql.ddl import table_def_from_schema
from target_dap_sql.dialects.mysql import MySQLDialect
from target_dap_sql.dialects.postgresql import PostgreSQLDialect
from tests.e2e.util import canvas_tables, clean_env, exe, small_sandbox, tap_config, write_json

MYSQL = MySQLDialect(parse_connection_string("mysql://root@127.0.0.1/x"))
MYSQL.local_infile = True  # (as after connecting to a server that allows it)
DIALECTS = {
    "postgresql": PostgreSQLDialect(parse_connection_string("postgresql://u@127.0.0.1/x")),
    "mysql": MYSQL,
}


@pytest.fixture(params=sorted(DIALECTS))
def dialect(request):
    return DIALECTS[request.param]


def _python(line: bytes, renderers: dict) -> tuple | None:
    """The loader's Python path: (stream, key, row, version), or None for a delete."""
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        msg = json.loads(line)
    rec = msg["record"]
    if rec.get("_sdc_deleted_at"):
        return None
    key, row = renderers[msg["stream"]].render(rec)
    return msg["stream"].encode(), key, row, msg.get("version")


def _schemas(lines: list[bytes], dialect) -> tuple[dict, dict]:
    plans, renderers = {}, {}
    for line in lines:
        msg = orjson.loads(line)
        if msg["type"] == "SCHEMA":
            tdef = table_def_from_schema(msg, None)
            plans[tdef.stream.encode()] = dialect.copy_plan(tdef)
            renderers[tdef.stream] = dialect.renderer(tdef)
    return plans, renderers


def _check(lines: list[bytes], plans: dict, renderers: dict) -> tuple[int, int]:
    taken = declined = 0
    for line in lines:
        if not line.startswith(b'{"type":"RECORD"'):
            continue
        fast = _rows.row(line, plans)
        if fast is None:
            declined += 1
            continue
        taken += 1
        assert fast == _python(line, renderers), line[:300]
    return taken, declined


@pytest.fixture(scope="module")
def tap_output(tmp_path_factory) -> tuple[list[bytes], list[bytes]]:
    """The tap's lines for every sandbox table: a snapshot, then an incremental."""
    tmp_path = tmp_path_factory.mktemp("tap")
    with small_sandbox(seed=7) as sb:
        cfg = write_json(tmp_path / "tap.json", tap_config(sb, tables=canvas_tables()))
        first = subprocess.run([exe("tap-canvas-data2"), "--config", str(cfg)], check=True,
                               capture_output=True, env=clean_env()).stdout.splitlines()
        state = [orjson.loads(x)["value"] for x in first if x.startswith(b'{"type":"STATE"')]
        for table in ("submissions", "users", "accounts"):
            sb.advance("canvas", table, inserts=5, updates=8, deletes=4)
        st = write_json(tmp_path / "state.json", state[-1])
        second = subprocess.run([exe("tap-canvas-data2"), "--config", str(cfg), "--state",
                                 str(st)], check=True, capture_output=True,
                                env=clean_env()).stdout.splitlines()
    return first, second


def test_tap_output_of_every_table(tap_output, dialect):
    first, second = tap_output
    plans, renderers = _schemas(first, dialect)
    taken, declined = _check(first, plans, renderers)
    # declined: array / JSON columns (assignments), control characters of the hard values
    assert taken > 0.8 * (taken + declined), (taken, declined)
    taken2, declined2 = _check(second, plans, renderers)
    assert taken2 and declined2  # upserts taken, deletes declined


_SCHEMA = {
    "type": "SCHEMA", "stream": "s", "key_properties": ["id"],
    "schema": {"type": "object", "properties": {
        "id": {"type": "integer"},
        "n": {"type": ["integer", "null"]},
        "x": {"type": ["number", "null"]},
        "ok": {"type": ["boolean", "null"]},
        "t": {"type": ["string", "null"]},
        "j": {"type": ["object", "null"]},
    }},
}


def _line(record: bytes, tail: bytes = b"}") -> bytes:
    return b'{"type":"RECORD","stream":"s","record":{' + record + b"}" + tail


def _hard(dialect) -> tuple[dict, dict]:
    tdef = table_def_from_schema(_SCHEMA, None)
    return {b"s": dialect.copy_plan(tdef)}, {"s": dialect.renderer(tdef)}


TAKEN = [
    b'"id":1,"n":2,"x":1.5,"ok":true,"t":"plain","j":null',
    b'"id":-0,"n":-7,"x":-0.0,"ok":false,"t":"","j":null',
    b'"id":2,"n":null,"x":1e-7,"ok":null,"t":null,"j":null',
    b'"id":3,"n":123456789012345678,"x":1E+300,"ok":true,"t":"q\\"b\\\\s\\/","j":null',
    b'"id":4,"n":0,"x":100000,"ok":true,"t":"\\u00e9\\ud83d\\ude42 raw \xc3\xa9 \\n\\r\\t\\b\\f",'
    b'"j":"text"',
    b'"id":5,"n":1,"x":0.1,"ok":true,"t":"\\u0022\\u005c","j":null',
    b'"t":"reordered","id":6,"j":null,"x":2.50,"n":3,"ok":false',
]
DECLINED = [
    b'"id":7,"n":1,"x":1,"ok":true,"t":"nul \\u0000","j":null',  # NUL: the renderer's error
    b'"id":8,"n":1,"x":1.5e-7,"ok":true,"t":"ctl \\u0001","j":null',  # other controls
    b'"id":9,"n":1,"x":1,"ok":true,"t":"t","j":{"a":1}',  # nested JSON
    b'"id":10,"n":1,"x":1,"ok":true,"t":"t"',  # a missing property
    b'"id":11,"n":1,"x":1,"ok":true,"t":"t","j":null,"extra":1',  # an unknown one
    b'"id":12,"n":1,"x":1,"ok":true,"t":"t","j":null,"_sdc_deleted_at":"2025-01-01"',
    b'"id":13,"n":1234567890123456789012,"x":1,"ok":true,"t":"t","j":null',  # > 64 bits
    b'"id":14,"n":1,"x":1e400,"ok":true,"t":"t","j":null',  # not a double
    b'"id":15,"n":1,"x":1,"ok":true,"t":"lone \\ud800","j":null',
    b'"id":16,"n":1,"x":1,"ok":true,"t":"bad \xff","j":null',  # not UTF-8
    b'"id":17,"id":17,"n":1,"x":1,"ok":true,"t":"t","j":null',  # repeated
]


@pytest.mark.parametrize("record", TAKEN)
@pytest.mark.parametrize("tail", [b"}", b',"version":1700000000123}', b"}\r"])
def test_hard_values_taken(record, tail, dialect):
    plans, renderers = _hard(dialect)
    line = _line(record, tail)
    fast = _rows.row(line, plans)
    assert fast is not None
    assert fast == _python(line, renderers)


@pytest.mark.parametrize("record", DECLINED)
def test_declined(record, dialect):
    plans, renderers = _hard(dialect)
    fast = _rows.row(_line(record), plans)
    if (dialect is MYSQL and b"\\u000" in record) or b"\\u0001" in record:
        # LOAD DATA text takes NUL and controls; COPY rows take controls other than NUL in
        # the renderer's exact form (floats as repr)
        assert fast is not None
        assert fast == _python(_line(record), renderers)
    else:
        assert fast is None


@pytest.mark.parametrize("line", [
    b'{"type": "RECORD", "stream": "s", "record": {"id": 1}}',  # not compact
    b'{"type":"RECORD","stream":"other","record":{"id":1}}',  # no plan
    b'{"type":"RECORD","stream":"s","record":{"id":1,"n":1,"x":1,"ok":true,"t":"t","j":null},'
    b'"time_extracted":"2025-01-01T00:00:00Z"}',
    b'{"type":"RECORD","stream":"s","record":{"id":1,"n":1,"x":1,"ok":true,"t":"t","j":null},'
    b'"version":01}',
    b'{"type":"RECORD","stream":"s","record":{"id":1,"n":1,"x":1,"ok":true,"t":"t","j":null}',
])
def test_other_envelopes_declined(line, dialect):
    plans, _ = _hard(dialect)
    assert _rows.row(line, plans) is None


def test_random_doubles_as_the_renderer_writes_them(dialect):
    plans, renderers = _hard(dialect)
    rnd = random.Random(5)
    values = [struct.unpack("<d", rnd.randbytes(8))[0] for _ in range(20000)]
    values += [float(f"{rnd.uniform(-1, 1) * 10 ** rnd.randint(-30, 30):.{rnd.randint(1, 17)}g}")
               for _ in range(40000)]  # every decimal exponent, short and long digits
    values += [m * 10.0 ** e for m in (1, 1.5, -3.25, 9.999999999999999) for e in range(-9, 20)]
    values += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 0.0]
    for v in values:
        if v != v or v in (float("inf"), float("-inf")):
            continue
        for text in (repr(v).encode(), orjson.dumps(v), b"%.17g" % v):
            if b"e" not in text and b"." not in text and b"E" not in text:
                text += b".0"
            line = _line(b'"id":1,"n":1,"x":' + text + b',"ok":true,"t":"t","j":null')
            fast = _rows.row(line, plans)
            assert fast == _python(line, renderers), text


def test_bad_arguments_are_errors_not_crashes():
    line = b'{"type":"RECORD","stream":"s","record":{"id":1}}'
    with pytest.raises(TypeError):
        _rows.row(line.decode(), {})
    with pytest.raises(ValueError, match="plan"):
        _rows.row(line, {b"s": ((b'"id":',), (0,), b"p")})
    with pytest.raises(ValueError, match="plan"):
        _rows.row(line, {b"s": ((b'"id":',), (3,), b"p", 0)})  # key index out of range
    assert _rows.row(line, {b"s": ((b'"id":',), (0,), b"p", 0)}) == (b"s", 1, b"1", None)
