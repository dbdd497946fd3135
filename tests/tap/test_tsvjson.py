"""The TSV -> RECORD-line transcoders (C and pure Python) give exactly the records of the
generic parser, and its errors."""

from __future__ import annotations

import json

import orjson
import pytest

from tap_canvas_data2 import _tsvjson
from tap_canvas_data2._tsvjson import TsvRecordWriter, _fragments
from tap_canvas_data2.api.client import DAPClient
from tap_canvas_data2.api.objects import ObjectParser


def _generic(schema, data, deselected=()):
    out = []
    for batch in ObjectParser(schema, "tsv").batches([data]):
        for action, ts, row in batch:
            if action == "D":
                row["_sdc_deleted_at"] = ts
            else:
                for c in deselected:
                    row.pop(c, None)
            out.append(row)
    return out


@pytest.fixture(params=["c", "python"])
def impl(request, monkeypatch):
    """Which transcoder: the C speed-up, or the pure-Python one (no compiler at install)."""
    if request.param == "python":
        monkeypatch.setattr(_tsvjson, "_transcode", None)
    return request.param


def test_c_speedup_is_built():
    """CI and the README's install have a compiler: the tap must run on the C path there."""
    assert _tsvjson._transcode is not None


@pytest.mark.parametrize("incremental", [False, True])
def test_same_records_as_generic_parser(sandbox, incremental, impl):
    sb = sandbox
    client = DAPClient(sb.url, sb.client_id, sb.client_secret, jobs_per_minute=None,
                       poll_interval_initial=0.02)
    for table in sb.tables("canvas"):
        schema, _ = client.get_schema("canvas", table)
        if incremental:
            since = sb.latest("canvas", table)
            sb.advance("canvas", table, inserts=5, updates=6, deletes=4)
            job = client.incremental("canvas", table, since, format="tsv")
        else:
            job = client.snapshot("canvas", table, format="tsv")
        data = b"".join(b"".join(chunks) for _, chunks in client.download(job))
        value_cols = list(schema["properties"]["value"]["properties"])
        deselected = value_cols[1:3]
        for desel in ((), deselected):
            writer = TsvRecordWriter(f"canvas-{table}", schema, None if incremental else 42,
                                     desel)
            # tiny chunks: block boundaries anywhere
            chunks = [data[i:i + 777] for i in range(0, len(data), 777)]
            lines = b"".join(writer.object_lines(chunks)).decode().splitlines()
            msgs = [json.loads(x) for x in lines]
            assert all(m["type"] == "RECORD" and m["stream"] == f"canvas-{table}" for m in msgs)
            assert all(("version" in m) != incremental for m in msgs)
            assert [m["record"] for m in msgs] == _generic(schema, data, desel), table
            assert writer.n_upserts + writer.n_deletes == len(msgs)
            if impl == "c":  # the sandbox's hard values all stay on the fast path
                assert writer.n_fallbacks == 0, table
    client.close()


def test_fragments_edge_cases():
    assert _fragments(["1", "\\N", "-5"], "int") == (False, ["1", "null", "-5"])
    assert _fragments(["1.5", "NaN", "\\N"], "float") == (False, ["1.5", "null", "null"])
    assert _fragments(["a", "b"], "str") == (True, ["a", "b"])
    quoted, frags = _fragments(['say "hi"', "\\N", "tab\\there", "back\\\\slash"], "str")
    assert not quoted
    assert [json.loads(f) for f in frags] == ['say "hi"', None, "tab\there", "back\\slash"]
    assert _fragments(['{"a":1}', "\\N"], "json") == (False, ['{"a":1}', "null"])
    assert _fragments(["true", "\\N"], "bool") == (False, ["true", "null"])


_EDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "key": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
        "value": {"type": "object", "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "ok": {"type": "boolean"},
            "s": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "obj": {"type": "object", "properties": {"a": {"type": "integer"}}},
        }},
        "meta": {"type": "object", "properties": {"ts": {"type": "string"},
                                                  "action": {"type": "string"}}},
    },
}
_HEADER = "meta.ts\tmeta.action\tkey.id\tvalue.n\tvalue.x\tvalue.ok\tvalue.s\tvalue.at\tvalue.obj"
_TS = "2025-01-01T00:00:00Z"


def _edge(rows: list[str]) -> tuple[list[dict], list[dict], TsvRecordWriter]:
    data = ("\n".join([_HEADER, *rows]) + "\n").encode()
    writer = TsvRecordWriter("t", _EDGE_SCHEMA, None)
    lines = b"".join(writer.object_lines([data])).decode().splitlines()
    # the generic path emits orjson.dumps(row): NaN -> null (json for ints beyond 64 bits)
    generic = [json.loads(json.dumps(r)) if any(isinstance(v, int) and abs(v) >> 63 for v in
                                                r.values()) else orjson.loads(orjson.dumps(r))
               for r in _generic(_EDGE_SCHEMA, data)]
    return [json.loads(x)["record"] for x in lines], generic, writer


@pytest.mark.parametrize(("label", "row"), [
    ("plain", "1\t-5\t1.5\ttrue\tplain\t2025-01-01T00:00:00Z\t{\"a\":1}"),
    ("nulls", "2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N"),
    ("empty string", "3\t0\t0\tfalse\t\t\\N\t{}"),
    ("escapes", '4\t1\t2e3\ttrue\tsay "hi"\\tand\\\\N \\\\ \\n\\r\\0\\v\\b\\f\x01\x7f é 🙂'
                '\t\\N\t\\N'),
    ("the string \\N", "5\t1\t1\ttrue\t\\\\N\t\\N\t\\N"),
    ("NaN / Infinity", "6\t1\tNaN\ttrue\ts\t\\N\t\\N"),
    ("1e400", "7\t1\t1e400\ttrue\ts\t\\N\t\\N"),
    ("json escapes", '8\t1\t1\ttrue\ts\t\\N\t{"a":2,"b":"x\\\\ny","c":"\\\\\\\\N"}'),
    ("json line breaks", '9\t1\t1\ttrue\ts\t\\N\t{\\n"a": 3\\n}'),
    ("huge int", "10\t123456789012345678901234567890\t1\ttrue\ts\t\\N\t\\N"),
    ("NULL inside a value", "11\t1\t1\ttrue\tx\\Ny\t\\N\t\\N"),
])
def test_edge_values_fast_path(label, row, impl):
    base = f"{_TS}\tU\t0\t0\t0\tfalse\tbase\t\\N\t\\N"  # a second row of ordinary values
    fast, generic, writer = _edge([base, f"{_TS}\tU\t{row}"])
    assert fast == generic, label
    if impl == "c":
        assert writer.n_fallbacks == (label == "NULL inside a value"), label


def test_deletes_fast_path(impl):
    rows = [f"{_TS}\tU\t1\t2\t3\ttrue\ts\t\\N\t\\N",
            "2025-02-01T00:00:00Z\tD\t2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N",
            f"{_TS}\tU\t3\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N"]
    fast, generic, writer = _edge(rows)
    assert fast == generic
    assert fast[1] == {"id": 2, "_sdc_deleted_at": "2025-02-01T00:00:00Z"}
    assert (writer.n_upserts, writer.n_deletes) == (2, 1)
    assert writer.n_fallbacks == 0


@pytest.mark.parametrize(("label", "row"), [
    ("unknown escape", "1\t1\t1\ttrue\tbad\\q\t\\N\t\\N"),
    ("too few fields", "1\t1\t1\ttrue"),
    ("too many fields", "1\t1\t1\ttrue\ts\t\\N\t\\N\textra"),
    ("not a boolean", "1\t1\t1\tyes\ts\t\\N\t\\N"),
    ("not an integer", "1\tone\t1\ttrue\ts\t\\N\t\\N"),
    ("not JSON", "1\t1\t1\ttrue\ts\t\\N\t{oops"),
])
def test_bad_blocks_fail_like_the_parser(label, row, impl):
    data = ("\n".join([_HEADER, f"{_TS}\tU\t{row}"]) + "\n").encode()
    with pytest.raises(Exception) as generic_error:  # noqa: PT011 - the parser's own error
        _generic(_EDGE_SCHEMA, data)
    writer = TsvRecordWriter("t", _EDGE_SCHEMA, None)
    with pytest.raises(type(generic_error.value)) as fast_error:
        b"".join(writer.object_lines([data]))
    assert str(fast_error.value) == str(generic_error.value), label


def test_raw_carriage_return_and_blank_lines(impl):
    for extra in ("\r", "\n"):
        data = (f"{_HEADER}\n{_TS}\tU\t1\t1\t1\ttrue\ts{extra}\t\\N\t\\N\n").encode()
        writer = TsvRecordWriter("t", _EDGE_SCHEMA, None)
        try:
            out = b"".join(writer.object_lines([data]))
        except Exception as exc:  # noqa: BLE001 - must be the parser's error
            with pytest.raises(type(exc)):
                _generic(_EDGE_SCHEMA, data)
        else:
            assert [json.loads(x)["record"] for x in out.splitlines()] == _generic(
                _EDGE_SCHEMA, data)
