"""OAuth client-credentials login to DAP and token reuse.

``POST {base_url}/ids/auth/login`` with form ``grant_type=client_credentials`` and HTTP Basic
``client_id:client_secret`` returns ``{access_token, expires_in, scope, token_type}``.  The
token (a JWT) is reused until 5 minutes before its ``exp`` claim, decoded without verifying
the signature.  The login is retried on 5xx/429/dropped connections, never on 401.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable

from .errors import AuthenticationError, ProtocolError, error_from_response
from .http import HTTPSession, json_body

__all__ = ["TokenProvider", "jwt_expiry"]

log = logging.getLogger("tap_canvas_data2.api.auth")

REFRESH_MARGIN = 300.0  # seconds before exp when the token is renewed


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, decoded without verification."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None
    except (IndexError, ValueError, UnicodeDecodeError, AttributeError):
        return None


class TokenProvider:
    """Gives a valid access token, logging in when there is none or it is about to expire.
    Thread-safe: concurrent callers share one login."""

    def __init__(self, http: HTTPSession, base_url: str, client_id: str, client_secret: str,
                 *, refresh_margin: float = REFRESH_MARGIN,
                 clock: Callable[[], float] = time.time) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/ids/auth/login"
        self._client_id = client_id
        self._client_secret = client_secret
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires: float = 0.0
        self.logins = 0

    def token(self) -> str:
        """A token valid for at least ``refresh_margin`` more seconds (or a fresh one)."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires - self._margin:
                self._login()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (rejected by DAP) so that the next :meth:`token` logs in again;
        a no-op if another thread already replaced it."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _login(self) -> None:
        resp = self._http.request(
            "POST", self._url, what="login (POST /ids/auth/login)",
            data={"grant_type": "client_credentials"},
            auth=(self._client_id, self._client_secret),
            headers={"Accept": "application/json"})
        body = json_body(resp)
        if resp.status_code == 401:
            err = error_from_response(401, body, what="login",
                                      secrets=(self._client_secret,))
            raise AuthenticationError(
                "DAP rejected the credentials (401): check DAP_CLIENT_ID / DAP_CLIENT_SECRET "
                "(client_id / client_secret) and that the key is not expired or revoked",
                status=401, uuid=err.uuid, error_type=err.error_type,
                server_message=err.server_message)
        if resp.status_code != 200:
            raise error_from_response(resp.status_code, body, what="login",
                                      secrets=(self._client_secret,))
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProtocolError(
                "DAP login answered without an access_token: check base_url (it must be the "
                "DAP API root, e.g. https://api-gateway.instructure.com)")
        now = self._clock()
        exp = jwt_expiry(token)
        if exp is None:
            try:
                exp = now + float(body.get("expires_in", 3600))
            except (TypeError, ValueError):
                exp = now + 3600
        self._token, self._expires = token, exp
        self.logins += 1
        log.debug("logged in to DAP; token valid for %.0f s", exp - now)
