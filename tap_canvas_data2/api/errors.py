"""Typed exceptions for every DAP error kind.

Every message is ONE line that says what happened and what to do about it, ends with the
DAP error uuid when DAP sent one, and never contains the client secret, an access token or
the query string (signature) of a pre-signed URL.  Use :func:`error_from_response` to turn
an HTTP error response of the DAP API into the matching exception.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DAPError",
    "AuthenticationError",
    "AccountError",
    "AccountDisabledError",
    "AccountNotOnboardedError",
    "AccountUnderMaintenanceError",
    "RequestTypeForbiddenError",
    "NotFoundError",
    "ValidationError",
    "OutOfRangeError",
    "SnapshotRequiredError",
    "ProcessingError",
    "ServerError",
    "RateLimitedError",
    "TransportError",
    "ProtocolError",
    "JobFailedError",
    "ObjectDownloadError",
    "ObjectFormatError",
    "redact_url",
    "redact_text",
    "error_from_response",
]

_MAX_SERVER_TEXT = 300


def redact_url(url: str) -> str:
    """Return ``url`` without its query string and fragment (pre-signed URL signatures).

    >>> redact_url("https://bucket.s3/obj.tsv.gz?X-Amz-Signature=abc")
    'https://bucket.s3/obj.tsv.gz'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]
    netloc = parts.netloc.rsplit("@", 1)[-1]  # drop any user:password@
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_URL_WITH_QUERY = re.compile(r"(https?://[^\s?#\"'<>]*)[?#][^\s\"'<>]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Make server-provided or exception text safe for a one-line message.

    Strips query strings of URLs, bearer tokens and JWT-looking strings, removes the given
    ``secrets`` verbatim, collapses whitespace to one line and truncates long text.
    """
    text = _URL_WITH_QUERY.sub(r"\1", text)
    text = _BEARER.sub(r"\1<redacted>", text)
    text = _JWT.sub("<redacted-token>", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
    if len(text) > _MAX_SERVER_TEXT:
        text = text[: _MAX_SERVER_TEXT - 3] + "..."
    return text


class DAPError(Exception):
    """Base of every error raised by the DAP API client.

    Attributes: ``status`` (HTTP status or None), ``uuid`` (DAP error uuid or None),
    ``error_type`` (DAP error ``type`` or None), ``server_message`` (DAP's own message,
    redacted, or None).
    """

    #: whether retrying the same operation later may succeed
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        uuid: str | None = None,
        error_type: str | None = None,
        server_message: str | None = None,
    ) -> None:
        self.status = status
        self.uuid = uuid
        self.error_type = error_type
        self.server_message = server_message
        line = " ".join(message.split())
        if uuid:
            line = f"{line} [error uuid {uuid}]"
        self.message = line
        super().__init__(line)

    def __str__(self) -> str:
        return self.message


class AuthenticationError(DAPError):
    """401: the credentials (or the token obtained with them) were rejected."""


class AccountError(DAPError):
    """403: the account cannot use DAP right now (see subclasses)."""


class AccountDisabledError(AccountError):
    """403 AccountDisabled."""


class AccountNotOnboardedError(AccountError):
    """403 AccountNotOnboarded."""


class AccountUnderMaintenanceError(AccountError):
    """403 AccountUnderMaintenance (temporary)."""

    retryable = True


class RequestTypeForbiddenError(AccountError):
    """403 RequestTypeForbidden: these credentials may not make this kind of request."""


class NotFoundError(DAPError):
    """404: an unknown namespace, table, job or object. ``id`` and ``kind`` say which."""

    def __init__(self, message: str, *, id: str | None = None, kind: str | None = None, **kw: Any):
        self.id = id
        self.kind = kind
        super().__init__(message, **kw)


class ValidationError(DAPError):
    """400 ValidationError: DAP rejected the request body. ``location`` as sent by DAP."""

    def __init__(self, message: str, *, location: dict | None = None, **kw: Any):
        self.location = location
        super().__init__(message, **kw)


class _WindowError(DAPError):
    def __init__(self, message: str, *, since: str | None = None, until: str | None = None,
                 **kw: Any):
        self.since = since
        self.until = until
        super().__init__(message, **kw)


class OutOfRangeError(_WindowError):
    """400 OutOfRange: ``since`` is older than DAP keeps changes; a new snapshot is needed."""


class SnapshotRequiredError(_WindowError):
    """400 SnapshotRequired: the table was reloaded upstream; a new snapshot is needed."""


class ProcessingError(DAPError):
    """DAP could not process the query (ProcessingError)."""

    retryable = True


class ServerError(DAPError):
    """A 5xx response that persisted through every retry (or an unexpected error body)."""

    retryable = True


class RateLimitedError(ServerError):
    """429 responses that persisted through every retry."""


class TransportError(DAPError):
    """The connection failed (refused, dropped, timed out) through every retry."""

    retryable = True


class ProtocolError(DAPError):
    """DAP answered with something that is not the documented shape."""


class JobFailedError(DAPError):
    """A DAP query job ended with status ``failed``. ``job_id`` says which job."""

    retryable = True

    def __init__(self, message: str, *, job_id: str | None = None, **kw: Any):
        self.job_id = job_id
        super().__init__(message, **kw)


class ObjectDownloadError(DAPError):
    """An object (file) of a completed job could not be downloaded."""

    retryable = True

    def __init__(self, message: str, *, object_id: str | None = None, **kw: Any):
        self.object_id = object_id
        super().__init__(message, **kw)


class ObjectFormatError(DAPError):
    """A downloaded object could not be parsed (bad gzip, bad TSV/JSONL/CSV line)."""


# --------------------------------------------------------------------------- mapping


def _describe(ns: str | None, table: str | None) -> str:
    if ns and table:
        return f"{ns}.{table}"
    return table or ns or "the request"


def error_from_response(
    status: int,
    body: Any,
    *,
    what: str = "",
    namespace: str | None = None,
    table: str | None = None,
    attempts: int = 1,
    secrets: tuple[str, ...] = (),
) -> DAPError:
    """Build the typed exception for a DAP error response.

    ``body`` is the decoded JSON body (or raw text / None); ``what`` describes the request
    in a few words (e.g. "GET job 123"); ``attempts`` is how many times it was tried.
    Errors are told apart first by ``type`` (so SnapshotRequired and OutOfRange, which share
    their fields, are distinct), then by the fields present, then by the status.
    """
    err: dict = {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    uuid = err.get("uuid") if isinstance(err.get("uuid"), str) else None
    raw_msg = err.get("message")
    if raw_msg is None and isinstance(body, str):
        raw_msg = body
    smsg = redact_text(str(raw_msg), secrets) if raw_msg not in (None, "") else None
    detail = f": {smsg}" if smsg else ""
    kw: dict[str, Any] = {"status": status, "uuid": uuid, "error_type": etype,
                          "server_message": smsg}
    target = _describe(namespace, table)
    tname = (etype or "").removesuffix("Error")
    tried = f" after {attempts} attempts" if attempts > 1 else ""

    if status == 401:
        return AuthenticationError(
            f"DAP rejected the credentials (401) for {what or 'the request'}: check "
            "DAP_CLIENT_ID / DAP_CLIENT_SECRET (client_id and client_secret) and that the "
            "key is not revoked", **kw)
    if status == 403:
        if tname == "AccountDisabled":
            return AccountDisabledError(
                "DAP says the account is disabled (403 AccountDisabled): ask Instructure "
                "support to re-enable Canvas Data 2 for this institution", **kw)
        if tname == "AccountNotOnboarded":
            return AccountNotOnboardedError(
                "DAP says the account is not onboarded (403 AccountNotOnboarded): enable "
                "Canvas Data 2 for the institution and create a key in the Instructure "
                "Identity Services", **kw)
        if tname == "AccountUnderMaintenance":
            return AccountUnderMaintenanceError(
                "DAP says the account is under maintenance (403 AccountUnderMaintenance): "
                "try again later", **kw)
        if tname == "RequestTypeForbidden":
            return RequestTypeForbiddenError(
                f"DAP forbids this request type for these credentials (403 "
                f"RequestTypeForbidden) on {what or target}: check the key's permissions "
                f"and the requested namespace/format", **kw)
        return AccountError(
            f"DAP refused access (403{' ' + etype if etype else ''}) to {what or target}: "
            f"check the key's permissions{detail}", **kw)
    if tname == "SnapshotRequired":
        since, until = err.get("since"), err.get("until")
        return SnapshotRequiredError(
            f"DAP requires a new snapshot of {target} (SnapshotRequired, since={since}): the "
            "table was reloaded upstream; run a full snapshot of this table (full refresh) "
            "instead of an incremental query", since=since, until=until, **kw)
    if tname == "OutOfRange" or (not etype and "since" in err and "until" in err):
        since, until = err.get("since"), err.get("until")
        return OutOfRangeError(
            f"DAP no longer keeps changes of {target} since {since} (OutOfRange): the "
            "bookmark is older than the retention window; run a full snapshot of this table "
            "(full refresh)", since=since, until=until, **kw)
    if tname == "Validation" or "location" in err:
        loc = err.get("location") if isinstance(err.get("location"), dict) else None
        where = ""
        if loc:
            where = f" at line {loc.get('line')} column {loc.get('column')}"
        return ValidationError(
            f"DAP rejected {what or 'the request'} as invalid (ValidationError{where})"
            f"{detail}; check the query parameters (format, mode, since/until)",
            location=loc, **kw)
    if status == 404 or tname == "NotFound" or ("id" in err and "kind" in err):
        oid, kind = err.get("id"), err.get("kind")
        if oid is not None and kind:
            msg = (f"DAP has no {kind} '{oid}' (404): check the namespace and table name "
                   "(list the tables of the namespace to see the valid names)")
        else:
            msg = (f"DAP found nothing for {what or target} (404): check the namespace and "
                   f"table name{detail}")
        return NotFoundError(msg, id=None if oid is None else str(oid), kind=kind, **kw)
    if tname == "Processing":
        return ProcessingError(
            f"DAP could not process {what or 'the query'} for {target} (ProcessingError)"
            f"{detail}; retry later", **kw)
    if status == 429:
        return RateLimitedError(
            f"DAP kept rate-limiting {what or 'the request'} (429){tried}: lower "
            "jobs_per_minute / concurrency or try again later", **kw)
    if status >= 500:
        return ServerError(
            f"DAP server error (HTTP {status}) on {what or 'the request'}{tried}{detail}; "
            "try again later", **kw)
    return ProtocolError(
        f"DAP answered HTTP {status} to {what or 'the request'}{detail}; unexpected "
        "response, check base_url and the client version", **kw)
