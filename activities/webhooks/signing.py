"""The webhook signature scheme: what ``docs/webhooks.md`` promises receivers.

``Printflow-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`` with the merchant's
webhook secret, and ``Printflow-Timestamp`` the Unix time it was signed at. While a rotated
secret is still valid the header carries two values, ``v1=<by the new>,v1=<by the old>``.
Pure functions, so receivers' reference code (and our tests) use exactly what the sender uses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from typing import Any

EVENT_ID_HEADER = "Printflow-Event-Id"
TIMESTAMP_HEADER = "Printflow-Timestamp"
SIGNATURE_HEADER = "Printflow-Signature"
SIGNATURE_VERSION = "v1"
# What docs/webhooks.md tells receivers: reject timestamps further than this from their clock.
REPLAY_WINDOW = timedelta(minutes=5)


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent: stable for a stored payload, so every retry carries the same body."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of "{timestamp}.{body}">``, the ``Printflow-Signature`` header."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def sign_all(secrets: list[str], timestamp: int, body: bytes) -> str:
    """The header for several secrets (the current first, then one being rotated out)."""
    return ",".join(sign(secret, timestamp, body) for secret in secrets)


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance: timedelta = REPLAY_WINDOW,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent.

    The header may carry several comma-separated ``v1=`` values (room for secret rotation);
    one match is enough.
    """
    if not timestamp or not signature:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance.total_seconds():
        return False
    expected = sign(secret, sent_at, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))
