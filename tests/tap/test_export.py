"""export_snapshot / export_incremental: job results as local files."""

from __future__ import annotations

import datetime
import json

from tap_canvas_data2.api.objects import parse_object
from tap_canvas_data2.export import export_incremental, export_snapshot
from tests.tap.helpers import tap_config


def _ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_export_snapshot_and_incremental(sandbox, tmp_path):
    sb = sandbox
    cfg = tap_config(sb)
    snap = export_snapshot(cfg, "canvas", "users", tmp_path / "snap", "jsonl")
    assert snap.files and all(f.suffix == ".jsonl" and f.exists() for f in snap.files)
    lines = [json.loads(x) for f in snap.files for x in f.read_text().splitlines() if x]
    assert len(lines) == len(list(sb.expected_rows("canvas", "users")))
    assert _ts(snap.at) == _ts(sb.latest("canvas", "users"))

    commit = sb.advance("canvas", "users", inserts=2, updates=1, deletes=1)
    inc = export_incremental(cfg, "canvas", "users", snap.timestamp, None, tmp_path / "inc",
                             "tsv")
    assert _ts(inc.until) == _ts(commit)
    schema = sb.schema("canvas", "users")
    recs = [r for f in inc.files for r in parse_object(f.read_bytes(), schema, "tsv")]
    assert sorted(a for a, _, _ in recs) == ["D", "U", "U", "U"]

    csv = export_incremental(cfg, "canvas", "users", snap.at, commit, tmp_path / "csv", "csv")
    assert all(f.suffix == ".csv" for f in csv.files)
