"""Signed session cookies and the CSRF tokens tied to them, for the support console
(``/support``) and the merchant portal (``/portal``).

A session value is ``sid.subject.expires.signature``: ``sid`` is 128 random bits made at
sign-in, ``subject`` who signed in (an agent's or a portal user's id; ``-`` for a sign-in
form's own short session), ``expires`` a Unix time and the signature an HMAC-SHA256 of the rest
under the app's session secret. A form's CSRF token is an HMAC of the session's ``sid``: without
the cookie's secret half no other site can make one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class Session:
    sid: str
    subject: str  # '-' for a sign-in form's own session
    expires_at: datetime


class Signer:
    """Issues and checks session values and the CSRF tokens tied to them."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret needs at least 16 bytes")
        self._secret = secret

    def _mac(self, purpose: str, message: str) -> str:
        return _b64(
            hmac.new(self._secret, f"{purpose}|{message}".encode(), hashlib.sha256).digest()
        )

    def issue(self, subject: str, now: datetime, lifetime: timedelta) -> tuple[str, Session]:
        session = Session(secrets.token_urlsafe(16), subject, now + lifetime)
        payload = f"{session.sid}.{subject}.{int(session.expires_at.timestamp())}"
        return f"{payload}.{self._mac('session', payload)}", session

    def read(self, value: str | None, now: datetime) -> Session | None:
        """The session of a cookie value, or None when it is missing, forged or expired."""
        if not value:
            return None
        payload, _, signature = value.rpartition(".")
        if not payload or not hmac.compare_digest(
            signature.encode(), self._mac("session", payload).encode()
        ):
            return None
        parts = payload.split(".")
        if len(parts) != 3 or not parts[2].isdigit():
            return None
        sid, subject, expires = parts
        expires_at = datetime.fromtimestamp(int(expires), UTC)
        if expires_at <= now:
            return None
        return Session(sid, subject, expires_at)

    def csrf(self, session: Session) -> str:
        return self._mac("csrf", session.sid)

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token).encode(), self.csrf(session).encode())
