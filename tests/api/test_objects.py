"""Parsing of decompressed DAP objects (no server)."""

from __future__ import annotations

import json

import pytest

from tap_canvas_data2.api.errors import ObjectFormatError
from tap_canvas_data2.api.objects import ObjectParser, TableLayout, parse_object, unescape_tsv
from tests.api.tsv_fixture import to_tsv, wide_rows, wide_schema

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "key": {"type": "object", "properties": {"id": {"type": "integer"}},
                "required": ["id"], "additionalProperties": False},
        "value": {"type": "object", "additionalProperties": False, "properties": {
            "name": {"type": "string"},
            "n": {"type": "integer", "format": "int32"},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
            "at": {"type": "string", "format": "date-time"},
            "settings": {"type": "object", "additionalProperties": False,
                         "properties": {"theme": {"type": "string"},
                                        "size": {"type": "integer"},
                                        "deep": {"type": "object", "additionalProperties": False,
                                                 "properties": {"x": {"type": "boolean"}}}}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"oneOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "string"}]},
        }},
        "meta": {"type": "object", "properties": {"ts": {"type": "string"}}},
    },
}
HEAD = "meta.ts\tkey.id\tvalue.name\tvalue.n\tvalue.score\tvalue.ok\tvalue.at\tvalue.settings" \
       "\tvalue.tags\tvalue.kind"


def tsv(*lines: str, head: str = HEAD) -> bytes:
    return ("\n".join((head,) + lines) + "\n").encode()


def test_tsv_types_nulls_and_escapes():
    data = tsv(
        "2024-01-01T00:00:00Z\t1\tplain\t5\t1.5\ttrue\t2024-01-01T00:00:00.5Z\t"
        '{"theme":"dark"}\t["a","b"]\ta',
        "2024-01-01T00:00:01Z\t2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N",
        "2024-01-01T00:00:02Z\t3\ttab\\there\\nnl \\\\ bs \\r\\0\\b\\f\\v\t-7\t-0.25\tfalse\t"
        '2024-01-01T00:00:00Z\t{"theme":"say \\\\"hi\\\\"\\\\n"}\t[]\tzzz',
        "2024-01-01T00:00:03Z\t4\t\\\\N\t0\t3\ttrue\t\\N\t\\N\t\\N\t",
    )
    recs = parse_object(data, SCHEMA)
    assert [r[0] for r in recs] == ["U"] * 4
    assert recs[0] == ("U", "2024-01-01T00:00:00Z", {
        "id": 1, "name": "plain", "n": 5, "score": 1.5, "ok": True,
        "at": "2024-01-01T00:00:00.5Z", "settings": {"theme": "dark"}, "tags": ["a", "b"],
        "kind": "a"})
    assert recs[1][2] == {"id": 2, "name": None, "n": None, "score": None, "ok": None,
                          "at": None, "settings": None, "tags": None, "kind": None}
    assert recs[2][2]["name"] == "tab\there\nnl \\ bs \r\0\b\f\v"
    assert recs[2][2]["settings"] == {"theme": 'say "hi"\n'}
    assert recs[2][2]["n"] == -7 and recs[2][2]["ok"] is False and recs[2][2]["tags"] == []
    assert recs[3][2]["name"] == "\\N"  # an escaped backslash + N is text, not NULL
    assert recs[3][2]["kind"] == ""
    assert isinstance(recs[3][2]["score"], float)


def test_tsv_chunk_boundaries_anywhere():
    data = to_tsv(list(wide_rows(300, escape_every=3)))
    expected = parse_object(data, wide_schema())
    for size in (1, 7, 4096):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        assert list(ObjectParser(wide_schema()).records(chunks)) == expected
    assert [r for r in expected] == list(wide_rows(300, escape_every=3))


def test_tsv_large_blocks_match_generator():
    rows = list(wide_rows(5000, escape_every=7, null_rate=0.2))
    data = to_tsv(rows)
    assert len(data) > 2 * (1 << 20)  # several parser blocks
    assert parse_object([data[i:i + 65536] for i in range(0, len(data), 65536)],
                        wide_schema()) == rows


def test_tsv_incremental_actions_and_deletes():
    rows = list(wide_rows(40, incremental=True))
    got = parse_object(to_tsv(rows, incremental=True), wide_schema())
    for (a, ts, row), (ea, ets, erow) in zip(got, rows, strict=True):
        assert (a, ts) == (ea, ets)
        assert row == ({"id": erow["id"]} if a == "D" else erow)
    assert {a for a, _, _ in got} == {"U", "D"}


def test_tsv_missing_and_extra_columns():
    head = "meta.ts\tkey.id\tvalue.name\tvalue.brand_new"
    recs = parse_object(tsv("2024-01-01T00:00:00Z\t9\tx\tnew", head=head), SCHEMA)
    row = recs[0][2]
    assert list(row)[:3] == ["id", "name", "n"]
    assert row["n"] is None and row["settings"] is None and row["brand_new"] == "new"


def test_tsv_expanded_mode_reassembles_objects():
    head = ("meta.ts\tkey.id\tvalue.name\tvalue.settings.theme\tvalue.settings.size"
            "\tvalue.settings.deep.x")
    recs = parse_object(tsv("2024-01-01T00:00:00Z\t1\ta\tdark\t3\ttrue",
                            "2024-01-01T00:00:00Z\t2\tb\t\\N\t4\t\\N",
                            "2024-01-01T00:00:00Z\t3\tc\t\\N\t\\N\t\\N", head=head), SCHEMA)
    assert recs[0][2]["settings"] == {"theme": "dark", "size": 3, "deep": {"x": True}}
    assert recs[1][2]["settings"] == {"size": 4}
    assert recs[2][2]["settings"] is None


def test_tsv_bad_lines_are_reported():
    with pytest.raises(ObjectFormatError, match="line 3 has 2 fields"):
        parse_object(tsv("2024-01-01T00:00:00Z\t1\tx\t1\t1\ttrue\t\\N\t\\N\t\\N\t\\N",
                         "2024-01-01T00:00:00Z\t2"), SCHEMA)
    with pytest.raises(ObjectFormatError, match="column 'n'"):
        parse_object(tsv("2024-01-01T00:00:00Z\t1\tx\tNOPE\t1\ttrue\t\\N\t\\N\t\\N\t\\N"), SCHEMA)
    with pytest.raises(ObjectFormatError, match="meta.ts"):
        parse_object(b"key.id\n1\n", SCHEMA)


def test_unescape_tsv():
    assert unescape_tsv("a\\tb\\\\c") == "a\tb\\c"
    with pytest.raises(ValueError):
        unescape_tsv("bad \\x escape")


def test_jsonl_condensed_and_incremental():
    lines = [
        {"key": {"id": 1}, "value": {"name": "a", "settings": {"theme": "x"}},
         "meta": {"ts": "2024-01-01T00:00:00Z"}},
        {"key": {"id": 2}, "meta": {"ts": "2024-01-01T00:00:01Z", "action": "D"}},
        {"key": {"id": 3}, "value": {"ok": False}, "meta": {"ts": "2024-01-01T00:00:02Z",
                                                             "action": "U"}},
    ]
    data = "\n".join(json.dumps(x) for x in lines).encode() + b"\n"
    recs = parse_object([data[:10], data[10:]], SCHEMA, "jsonl")
    assert recs[0][2] == {"id": 1, "name": "a", "n": None, "score": None, "ok": None,
                          "at": None, "settings": {"theme": "x"}, "tags": None, "kind": None}
    assert recs[1] == ("D", "2024-01-01T00:00:01Z", {"id": 2})
    assert recs[2][0] == "U" and recs[2][2]["ok"] is False


def test_csv_quoting_and_null():
    head = "meta.ts,meta.action,key.id,value.name,value.n,value.ok,value.settings,value.tags"
    body = ('2024-01-01T00:00:00Z,U,1,"a ""quoted"", multi\nline",5,true,'
            '"{""theme"":""d""}","[""x""]"\r\n'
            '2024-01-01T00:00:01Z,U,2,"",NULL,false,NULL,NULL\n'
            '2024-01-01T00:00:02Z,U,3,"NULL",NULL,NULL,NULL,NULL\n'
            '2024-01-01T00:00:03Z,D,4,NULL,NULL,NULL,NULL,NULL\n')
    data = (head + "\n" + body).encode()
    for size in (1, 5, len(data)):
        recs = parse_object([data[i:i + size] for i in range(0, len(data), size)], SCHEMA,
                            "csv")
        assert recs[0][2]["name"] == 'a "quoted", multi\nline'
        assert recs[0][2]["settings"] == {"theme": "d"} and recs[0][2]["tags"] == ["x"]
        assert recs[1][2]["name"] == "" and recs[1][2]["n"] is None
        assert recs[1][2]["ok"] is False
        assert recs[2][2]["name"] == "NULL"  # quoted: a string, not NULL
        assert recs[3] == ("D", "2024-01-01T00:00:03Z", {"id": 4})


def test_layout_from_types():
    layout = TableLayout.from_types({"id": "integer"}, {"a": "boolean", "b": "string"})
    recs = parse_object(b"meta.ts\tkey.id\tvalue.a\tvalue.b\nT\t1\ttrue\tx\n", layout)
    assert recs == [("U", "T", {"id": 1, "a": True, "b": "x"})]
