"""Merchants' webhook receivers: the signature scheme, and sending one signed POST.

The signature scheme is what ``docs/webhooks.md`` promises receivers:
``Printflow-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`` with the merchant's
webhook secret, and ``Printflow-Timestamp`` the Unix time it was signed at. While a rotated
secret is still valid the header carries two values, ``v1=<by the new>,v1=<by the old>``.
Pure functions, so receivers' reference code (and our tests) use exactly what the sender uses.

``WebhookSender.send`` makes one POST and says how it went (``Attempt``); it never raises for
the receiver's answer. The URL is checked before and after DNS (``domain.webhook_urls``), and
the request goes to the address that was checked, so a second DNS answer cannot redirect it;
redirects are not followed, and nothing of the receiver's answer is kept but its status code.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from domain.webhook_urls import addresses_problem, literal_address, url_problem

log = logging.getLogger("printflow.webhooks")

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


# -- sending -------------------------------------------------------------------------------------

TIMEOUT_SECONDS = 10.0
USER_AGENT = "printflow-webhooks/1"


class Refused(Exception):
    """The URL may not be called: ``kind`` is what the delivery record keeps."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


# How a name becomes addresses: ``resolve`` below, or a stand-in that tests give.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address is its own answer)."""
    literal = literal_address(host)
    if literal is not None:
        return [str(literal)]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def pinned_request(
    url: str, *, allow_private: bool, resolver: Resolver | None = None
) -> tuple[httpx.URL, dict[str, Any]]:
    """The URL to connect to and the request's extensions: the host resolved once (by
    ``resolver``, ``resolve`` when None), every address checked, and the request sent to the
    checked address with the original name in ``Host`` and TLS (SNI and certificate), so a
    second DNS answer cannot redirect it. Webhooks and print files (``integrations.files``)
    both go through here."""
    # The name's spelling is not judged here: what it resolves to is.
    problem = url_problem(url, allow_private=allow_private, local_names=False)
    if problem is not None:
        raise Refused("refused_address" if "address" in problem else "refused_url", problem)
    target = httpx.URL(url)
    host = target.host
    port = target.port or (443 if target.scheme == "https" else 80)
    # A literal address is its own answer, whoever resolves names.
    literal = literal_address(host)
    try:
        addresses = (
            [str(literal)] if literal is not None else await (resolver or resolve)(host, port)
        )
    except OSError as err:
        raise Refused("dns_error", f"{host} does not resolve: {err}") from None
    problem = addresses_problem(host, addresses, allow_private=allow_private)
    if problem is not None or not addresses:
        raise Refused("refused_address", problem or f"{host} resolves to nothing")
    pinned = target.copy_with(host=addresses[0])
    return pinned, {"sni_hostname": host}


def error_kind(exc: httpx.HTTPError) -> str:
    """The short name a delivery record keeps for a request that got no answer."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol_error"
    return "request_error"


@dataclass(frozen=True)
class Attempt:
    """How one POST went: the receiver's status code if it answered, and ``error`` (None when
    it answered 2xx) as a delivery record keeps it: ``HTTP 500``, ``timeout``, ``dns_error`` …"""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.error is None


class WebhookSender:
    """Sends signed webhooks over ``http``, each request bounded by ``timeout`` seconds.

    ``allow_private`` (``WEBHOOK_ALLOW_PRIVATE``): http and private addresses are allowed.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float = TIMEOUT_SECONDS,
        allow_private: bool = False,
    ) -> None:
        self._http = http
        self._timeout = timeout
        self._allow_private = allow_private

    async def send(self, url: str, event_id: str, body: bytes, secrets: list[str]) -> Attempt:
        """POSTs ``body`` to ``url``, signed with each of ``secrets`` (the current one first)."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: event_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign_all(secrets, timestamp, body),
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        # What is recorded is the status code or a short kind of error, never what the
        # receiver answered: its body is the merchant's (or an attacker's) text, not ours.
        try:
            target, extensions = await pinned_request(url, allow_private=self._allow_private)
            headers["Host"] = httpx.URL(url).netloc.decode("ascii")
            outgoing = self._http.build_request(
                "POST",
                target,
                content=body,
                headers=headers,
                timeout=self._timeout,
                extensions=extensions,
            )
            # A redirect is a failed attempt: following it could lead anywhere.
            response = await self._http.send(outgoing, follow_redirects=False)
            await response.aclose()
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}"
                if response.is_redirect:
                    error += " redirect (not followed)"
        except Refused as refused:
            error = refused.kind
            log.warning("webhook %s not sent: %s", event_id, refused)
        except httpx.HTTPError as exc:
            error = error_kind(exc)
        return Attempt(status_code, error, int((time.perf_counter() - started) * 1000))
