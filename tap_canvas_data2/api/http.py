"""HTTP session with bounded retries for the DAP API and the object store.

Retried: 429 (honouring an integer ``Retry-After``, else ``retry_after_default``), every 5xx,
and dropped connections (refused, reset, closed without a response, truncated body, read
timeout) with exponential backoff and full jitter.  Everything else is returned to the caller,
which maps it to a typed error.  Logs at DEBUG without secrets: no headers, no bodies, and
URLs without their query string.
"""

from __future__ import annotations

import http.client
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.exceptions import ChunkedEncodingError, ConnectionError, ReadTimeout

from .errors import TransportError, error_from_response, redact_text, redact_url

__all__ = ["RetryPolicy", "HTTPSession", "DROPPED", "json_body", "install_log_redaction"]

log = logging.getLogger("tap_canvas_data2.api.http")

#: exceptions meaning "the connection dropped": retried
DROPPED: tuple[type[BaseException], ...] = (
    ConnectionError, ChunkedEncodingError, ReadTimeout, http.client.RemoteDisconnected,
    http.client.IncompleteRead, ConnectionResetError)


class RetryPolicy:
    """Bounded retries: ``max_retries`` after the first attempt, delays
    ``uniform(0, min(backoff_max, backoff_base * 2**n))`` (full jitter)."""

    def __init__(self, max_retries: int = 5, backoff_base: float = 1.0,
                 backoff_max: float = 30.0, retry_after_default: float = 30.0,
                 retry_after_max: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = max(0.0, float(backoff_base))
        self.backoff_max = max(0.0, float(backoff_max))
        self.retry_after_default = retry_after_default
        self.retry_after_max = retry_after_max
        self.sleep = sleep

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (0-based): full jitter."""
        cap = min(self.backoff_max, self.backoff_base * (2 ** retry))
        return random.uniform(0, cap)

    def retry_after(self, value: str | None) -> float:
        """Delay asked by a 429: integer ``Retry-After`` seconds, else the default."""
        if value is not None:
            try:
                return min(self.retry_after_max, max(0.0, float(int(value.strip()))))
            except ValueError:
                pass
        return min(self.retry_after_max, self.retry_after_default)


def json_body(resp: requests.Response) -> Any:
    """The decoded JSON body, or the text when it is not JSON (or None when empty)."""
    try:
        return resp.json()
    except ValueError:
        text = resp.text
        return text or None


class HTTPSession:
    """A ``requests.Session`` with the retry policy. Safe to share between threads for the
    small JSON calls; the downloader uses one per worker thread."""

    def __init__(self, policy: RetryPolicy | None = None, *,
                 timeout: float | tuple[float, float] = (10.0, 120.0),
                 user_agent: str = "tap-canvas-data2", secrets: tuple[str, ...] = ()) -> None:
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.secrets = secrets
        install_log_redaction()

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, url: str, *, what: str = "", retry: bool = True,
                namespace: str | None = None, table: str | None = None,
                **kwargs: Any) -> requests.Response:
        """Send a request, retrying 429/5xx/dropped connections; return the final response
        for any other status.  Raises :class:`TransportError` when the connection keeps
        failing, and the typed 429/5xx error when those persist through every attempt.
        ``retry=False`` disables retries (one attempt)."""
        kwargs.setdefault("timeout", self.timeout)
        policy = self.policy
        attempts = policy.attempts if retry else 1
        label = what or f"{method} {redact_url(url)}"
        for attempt in range(1, attempts + 1):
            start = time.monotonic()
            try:
                resp = self.session.request(method, url, **kwargs)
            except DROPPED as exc:
                ms = (time.monotonic() - start) * 1000
                log.debug("%s %s -> %s after %.0f ms (attempt %d/%d)", method,
                          redact_url(url), type(exc).__name__, ms, attempt, attempts)
                if attempt >= attempts:
                    raise TransportError(
                        f"Could not complete {label}: the connection failed "
                        f"({type(exc).__name__}: {redact_text(str(exc), self.secrets)}) "
                        f"after {attempt} attempt(s); check base_url and the network, then "
                        "retry") from None
                policy.sleep(policy.backoff(attempt - 1))
                continue
            ms = (time.monotonic() - start) * 1000
            status = resp.status_code
            log.debug("%s %s -> %d in %.0f ms (attempt %d/%d)", method, redact_url(url),
                      status, ms, attempt, attempts)
            if status == 429 or status >= 500:
                if attempt >= attempts:
                    return self._raise_final(resp, label, namespace, table, attempt)
                if status == 429:
                    delay = policy.retry_after(resp.headers.get("Retry-After"))
                else:
                    delay = policy.backoff(attempt - 1)
                log.debug("retrying %s in %.2f s", redact_url(url), delay)
                resp.close()
                policy.sleep(delay)
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_final(self, resp: requests.Response, label: str, namespace: str | None,
                     table: str | None, attempts: int) -> requests.Response:
        raise error_from_response(resp.status_code, json_body(resp), what=label,
                                  namespace=namespace, table=table, attempts=attempts,
                                  secrets=self.secrets)


# --------------------------------------------------------------------------- urllib3 logs


class _RedactQueryFilter(logging.Filter):
    """Strip query strings from urllib3's DEBUG request lines (pre-signed URL signatures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                (a.split("?", 1)[0] if " " not in a else redact_text(a))
                if isinstance(a, str) and "?" in a else a
                for a in record.args)
        return True


_installed = False


def install_log_redaction() -> None:
    """Add the query-string filter to urllib3's connection-pool logger (once)."""
    global _installed
    if _installed:
        return
    logging.getLogger("urllib3.connectionpool").addFilter(_RedactQueryFilter())
    _installed = True
