"""The API's perimeter: how big a request may be and how often a caller may send one.

Both are pure ASGI middleware that run before anything reads the body (``api.main`` puts them
outside the idempotency middleware, the guards and the routes):

- ``BodyLimit``: a request body above ``MAX_BODY_BYTES`` is a 413 ``body_too_large``, with or
  without a credential. A ``Content-Length`` above the limit is refused before one byte is read;
  a chunked body is counted as it arrives and refused as soon as the count passes the limit
  (the rest is never read, and whatever the app would have answered is dropped).
- ``RateLimits``: every credential gets ``RATE_LIMIT`` (``20/s``) with bursts up to
  ``RATE_LIMIT_BURST`` (40), then 429 ``rate_limited`` with ``Retry-After`` (whole seconds until
  the next request fits). The credential is the ``X-API-Key`` of a merchant, the
  ``Authorization`` bearer token of a facility (or of a Prometheus scrape), or the
  ``X-Agent-Token`` of an agent; the limiter keys on the header's name and the sha256 of its
  value, never the value. The admin API (``X-Admin-Token``, ``/v1/admin/*``) and the payload codec
  (``/codec``, the Web UI decodes a history's payloads in bursts) are exempt: operator secrets,
  used by scripts that create merchants in bulk and by the Web UI. Requests without any of these
  (health probes, the customer's pages) are not limited here.

The limiter is the ``limits`` library's moving window, in memory: a rate R per second with burst
B becomes "at most B requests in any B/R seconds" (40 in any 2 s for the defaults), which allows
the burst and holds the average to R. The counts live in each API process: with N replicas
behind a load balancer a key gets up to N times the rate.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import envelope

BODY_TOO_LARGE = "body_too_large"
RATE_LIMITED = "rate_limited"
# Whose requests are limited, by the header that carries the credential; the first one present.
LIMITED_CREDENTIALS = (b"x-api-key", b"authorization", b"x-agent-token")
# Operator endpoints: the admin API and the payload codec (the Web UI decodes in bursts).
_EXEMPT_PREFIXES = ("/v1/admin/", "/codec")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True)
class Rate:
    """``per_second`` requests a second on average, ``burst`` at once."""

    per_second: float
    burst: int

    @property
    def window_seconds(self) -> int:
        """The moving window that allows ``burst`` and averages ``per_second`` (at least 1 s)."""
        return max(1, math.ceil(self.burst / self.per_second))


def parse_rate(value: str, burst: int) -> Rate | None:
    """``"20/s"``, ``"600/min"``, ``"1000/hour"``; ``"off"`` (or ``"0"``): no limit."""
    text = value.strip().lower()
    if text in ("off", "0", "none", ""):
        return None
    found = _RATE.fullmatch(text)
    if found is None or found.group(2) not in _UNITS or int(found.group(1)) <= 0:
        raise ValueError(f"RATE_LIMIT: expected N/s, N/min or N/hour, or off; got {value!r}")
    if burst <= 0:
        raise ValueError("RATE_LIMIT_BURST must be at least 1")
    return Rate(int(found.group(1)) / _UNITS[found.group(2)], burst)


class _TooLarge(Exception):
    """Raised into the app from ``receive`` once the body passes the limit."""


def _too_large(limit: int) -> ASGIApp:
    return envelope(
        413,
        BODY_TOO_LARGE,
        f"the request body is larger than {limit} bytes",
        {"max_body_bytes": limit},
    )


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _too_large(limit)(scope, receive, send)
            return

        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # we answered 413 (or will); whatever the app says is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if refused and not started:
            await _too_large(limit)(scope, receive, send)


class RateLimits:
    def __init__(self, app: ASGIApp, rate: Rate | None) -> None:
        self.app = app
        self.rate = rate
        self.item = (
            RateLimitItemPerSecond(rate.burst, rate.window_seconds) if rate is not None else None
        )
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        item = self.item
        if item is None or scope["type"] != "http" or scope["path"].startswith(_EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        credential = next(
            (n + b":" + headers[n] for n in LIMITED_CREDENTIALS if headers.get(n)), None
        )
        if credential is None:
            await self.app(scope, receive, send)
            return
        key = hashlib.sha256(credential).hexdigest()
        if await self.limiter.hit(item, key):
            await self.app(scope, receive, send)
            return
        stats = await self.limiter.get_window_stats(item, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        response = envelope(
            429,
            RATE_LIMITED,
            f"too many requests with this credential; retry in {retry_after} s",
            {"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
