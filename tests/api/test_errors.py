"""Error mapping and redaction (no server)."""

from __future__ import annotations

from tap_canvas_data2.api import errors as E


def test_redact_url():
    assert E.redact_url("https://b.s3.amazonaws.com/x/y.tsv.gz?X-Amz-Signature=abc&b=c#f") \
        == "https://b.s3.amazonaws.com/x/y.tsv.gz"
    assert E.redact_url("https://user:pw@h/p?q") == "https://h/p"


def test_redact_text():
    t = E.redact_text("got https://h/o.gz?sig=SECRET and Bearer abc.def.ghi\nmore", ("pw1",))
    assert "SECRET" not in t and "abc.def" not in t and "\n" not in t
    assert E.redact_text("the pw1 leaked", ("pw1",)) == "the <redacted> leaked"


def err(status, **error):
    return E.error_from_response(status, {"error": error}, namespace="canvas", table="users")


def test_mapping_by_type_and_fields():
    assert isinstance(err(401, type="x", uuid="u", message="m"), E.AuthenticationError)
    e = err(400, type="SnapshotRequiredError", uuid="u1", message="m", since="a", until="b")
    assert type(e) is E.SnapshotRequiredError and (e.since, e.until) == ("a", "b")
    e = err(400, type="OutOfRangeError", uuid="u2", message="m", since="a", until="b")
    assert type(e) is E.OutOfRangeError
    e = err(400, type="ValidationError", uuid="u", message="bad",
            location={"line": 1, "column": 2, "character": 3})
    assert type(e) is E.ValidationError and "line 1 column 2" in str(e)
    e = err(404, type="NotFoundError", uuid="u", message="m", id="t", kind="table")
    assert type(e) is E.NotFoundError and e.kind == "table" and "no table 't'" in str(e)
    assert type(err(500, type="ProcessingError", uuid="u", message="m")) is E.ProcessingError
    assert type(err(503, type="X", uuid="u", message="m")) is E.ServerError
    for t, cls in [("AccountDisabled", E.AccountDisabledError),
                   ("AccountNotOnboarded", E.AccountNotOnboardedError),
                   ("AccountUnderMaintenance", E.AccountUnderMaintenanceError),
                   ("RequestTypeForbidden", E.RequestTypeForbiddenError)]:
        assert type(err(403, type=t, uuid="u", message="m")) is cls


def test_messages_are_one_line_with_uuid():
    e = err(400, type="OutOfRangeError", uuid="abc-123", message="multi\nline", since="s",
            until="u")
    assert str(e).endswith("[error uuid abc-123]") and "\n" not in str(e)
    e = E.error_from_response(502, "<html>\n<b>bad gateway</b>\n</html>", what="GET x")
    assert "\n" not in str(e) and "HTTP 502" in str(e)
