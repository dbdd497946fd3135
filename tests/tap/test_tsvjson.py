"""The TSV -> RECORD-line transcoder gives exactly the records of the generic parser."""

from __future__ import annotations

import json

import pytest

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


@pytest.mark.parametrize("incremental", [False, True])
def test_same_records_as_generic_parser(sandbox, incremental):
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
