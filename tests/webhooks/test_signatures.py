"""The signature scheme as docs/webhooks.md documents it, checked the way a receiver would."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path

from integrations.webhooks import body_bytes, sign, verify_signature

SECRET = "whsec_abc"
BODY = body_bytes({"id": "evt_1", "type": "order.status_updated", "data": {"order": {}}})


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    now = 1_760_000_000
    expected = hmac.new(SECRET.encode(), f"{now}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, now, BODY) == f"v1={expected}"


def test_a_receiver_accepts_a_fresh_genuine_request() -> None:
    now = int(time.time())
    assert verify_signature(SECRET, BODY, str(now), sign(SECRET, now, BODY))
    # Several values (e.g. during a secret rotation): one match is enough.
    both = f"{sign('whsec_old', now, BODY)}, {sign(SECRET, now, BODY)}"
    assert verify_signature(SECRET, BODY, str(now), both)


def test_a_receiver_rejects_forgeries_tampering_and_replays() -> None:
    now = int(time.time())
    good = sign(SECRET, now, BODY)
    assert not verify_signature("whsec_other", BODY, str(now), good), "wrong secret"
    assert not verify_signature(SECRET, BODY.replace(b"evt_1", b"evt_2"), str(now), good)
    assert not verify_signature(SECRET, BODY, str(now + 1), good), "timestamp is signed too"
    assert not verify_signature(SECRET, BODY, None, good)
    assert not verify_signature(SECRET, BODY, str(now), None)
    assert not verify_signature(SECRET, BODY, "soon", good)
    stale = now - 6 * 60
    assert not verify_signature(SECRET, BODY, str(stale), sign(SECRET, stale, BODY)), "a replay"
    recent = now - 4 * 60
    assert verify_signature(SECRET, BODY, str(recent), sign(SECRET, recent, BODY))


def test_the_documented_verification_snippet_works() -> None:
    """The Python snippet in docs/webhooks.md, run as a merchant would paste it."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", doc, re.S)
    assert snippet is not None, "docs/webhooks.md shows a Python verification snippet"
    scope: dict[str, object] = {}
    exec(snippet.group(1), scope)  # noqa: S102 - our own documentation
    verify = scope["verify"]
    now = int(time.time())
    headers = {"Printflow-Timestamp": str(now), "Printflow-Signature": sign(SECRET, now, BODY)}
    assert verify(SECRET, headers, BODY) is True  # type: ignore[operator]
    headers["Printflow-Signature"] = sign("whsec_other", now, BODY)
    assert verify(SECRET, headers, BODY) is False  # type: ignore[operator]
    old = now - 3600
    replay = {"Printflow-Timestamp": str(old), "Printflow-Signature": sign(SECRET, old, BODY)}
    assert verify(SECRET, replay, BODY) is False  # type: ignore[operator]
