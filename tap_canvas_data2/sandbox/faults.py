"""Fault injection: make the next N matching requests misbehave in a chosen way.

Kinds (``count`` = how many times it fires, ``path`` = optional request-path prefix):

=====================  =======================================================================
``http_429``           answer 429 Too Many Requests with ``Retry-After: <retry_after>`` (def. 1)
``http_403``           answer 403 with DAP error ``type`` (def. AccountDisabled; also
                       AccountNotOnboarded, AccountUnderMaintenance, RequestTypeForbidden)
``http_500``           answer 500 with a JSON error body
``http_503``           answer 503 with a JSON error body
``drop_connection``    close the socket without any response
``drop_mid_download``  on an object GET: send the headers and about half the body, then close
``token_expire``       immediately: every token issued so far is expired (401 from now on)
``token_revoke``       immediately: every token issued so far is revoked (401 from now on)
``url_expire``         the next object URLs are issued already expired (GET answers 403)
``job_fail``           the next jobs end ``failed`` with an error
``job_expiring``       the next completed jobs have ``expires_at`` within 30 s
``snapshot_required``  the next incremental queries fail with SnapshotRequiredError
``out_of_range``       the next incremental queries fail with OutOfRangeError
=====================  =======================================================================
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

KINDS = (
    "http_429", "http_403", "http_500", "http_503", "drop_connection", "drop_mid_download",
    "token_expire", "token_revoke", "url_expire", "job_fail", "job_expiring",
    "snapshot_required", "out_of_range",
)
#: DAP 403 error types (``http_403`` ``type=``) and their messages.
ACCOUNT_ERRORS = {
    "AccountDisabled": "the account is disabled (injected fault)",
    "AccountNotOnboarded": "the account is not onboarded to DAP (injected fault)",
    "AccountUnderMaintenance": "the account is under maintenance (injected fault)",
    "RequestTypeForbidden": "this request type is forbidden for the client (injected fault)",
}
#: Kinds that act at once when injected rather than on later requests.
IMMEDIATE = ("token_expire", "token_revoke")
#: Kinds checked at the start of any request (before routing).
REQUEST_LEVEL = ("http_429", "http_403", "http_500", "http_503", "drop_connection")


@dataclass
class Fault:
    kind: str
    count: int = 1
    path: str | None = None
    retry_after: int = 1
    fired: int = 0
    extra: dict = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        return self.count > 0 and (self.path is None or path.startswith(self.path))


class Faults:
    """The armed faults of one sandbox (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[Fault] = []
        self.fired: dict[str, int] = {}

    def add(self, fault: Fault) -> None:
        if fault.kind not in KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; known: {', '.join(KINDS)}")
        if fault.kind == "http_403":
            fault.extra.setdefault("type", "AccountDisabled")
            if fault.extra["type"] not in ACCOUNT_ERRORS:
                raise ValueError(f"unknown 403 type {fault.extra['type']!r}; known: "
                                 f"{', '.join(ACCOUNT_ERRORS)}")
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._armed.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, kinds: tuple[str, ...] | str, path: str) -> Fault | None:
        """Consume one firing of the first armed fault of these kinds matching ``path``."""
        if isinstance(kinds, str):
            kinds = (kinds,)
        with self._lock:
            for f in self._armed:
                if f.kind in kinds and f.matches(path):
                    f.count -= 1
                    f.fired += 1
                    self.fired[f.kind] = self.fired.get(f.kind, 0) + 1
                    if f.count == 0:
                        self._armed.remove(f)
                    return f
        return None

    def armed(self) -> list[dict]:
        with self._lock:
            return [{"kind": f.kind, "count": f.count, "path": f.path} for f in self._armed]
