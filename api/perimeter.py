"""The API's perimeter: how big a request may be, how often a caller may send one, and how often
an address may fail to authenticate.

All are pure ASGI middleware that run before anything reads the body (``api.main`` puts them
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
  value, never the value. Every credential a request carries counts, each header every time it
  appears: a request is refused when any of them is spent, so adding a made-up key to a request
  never escapes the limit of the real one. The admin API (``X-Admin-Token``, ``/v1/admin/*``)
  and the payload codec (``/codec``, the Web UI decodes a history's payloads in bursts) are
  exempt: operator secrets, used by scripts that create merchants in bulk and by the Web UI.
  Requests without any of these (health probes, the customer's pages) are not limited here.
- ``AuthFailures``: failed authentications count per client address, ``AUTH_FAILURE_LIMIT``
  (``20/minute``): a 401 anywhere (API, ``/metrics``, the console's and the portal's sign-in,
  ``/codec`` and its sign-in), a 404 on a path whose token is the credential (``/c/``, ``/p/``,
  ``/v1/personalization/``, ``/portal/invite/``, ``/portal/reset/``: an unknown link) and a
  wrong ``X-Admin-Token`` (a 403, marked by
  ``failed_authentication``). Beyond the limit, a failure is answered 429
  ``too_many_failed_authentications`` with ``Retry-After`` instead (an HTML page on the pages),
  whatever it carried. Only failures are refused: a request whose credential is valid is
  answered as always, so other callers behind the same address never lock a merchant, an agent
  or an operator out. A failure costs its lookup and writes nothing (no idempotency row, no
  request-log row: ``api.idempotency`` claims a key only for an authenticated caller).

The limiters are the ``limits`` library's moving window: a rate R per second with burst B
becomes "at most B requests in any B/R seconds" (40 in any 2 s for the defaults), which allows
the burst and holds the average to R; ``20/minute`` of failures is "at most 20 in any 60 s".
The counts live where ``RATE_LIMIT_STORAGE`` says (``Limiter``): ``memory://``, each API
process's own (with N replicas behind a load balancer a key gets up to N times the rate), or
``redis://host:6379``, the library's Redis storage, shared by every process on it.
The address is the connection's (``scope["client"]``): behind a proxy, run uvicorn with
``--proxy-headers`` and ``--forwarded-allow-ips`` so it is the caller's.

Each refusal is marked in ``scope["state"]["refusal"]`` (``rate_limited``,
``too_many_failed_authentications``, ``body_too_large``) for ``/metrics`` and the access log
(``api.metrics``); none is written to the request log (``api.request_ids``).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import envelope
from runtime.logs import TOKEN_PATH_PREFIXES

log = logging.getLogger("printflow.api")

BODY_TOO_LARGE = "body_too_large"
RATE_LIMITED = "rate_limited"
TOO_MANY_FAILURES = "too_many_failed_authentications"
# Whose requests are limited, by the header that carries the credential; every one present.
LIMITED_CREDENTIALS = frozenset({b"x-api-key", b"authorization", b"x-agent-token"})
# Paths whose token is the credential: a 404 there is an unknown token, a failed authentication.
TOKEN_PATHS = TOKEN_PATH_PREFIXES
_AUTH_FAILED = "auth_failed"
# Pages answer a page; the rest (the API, the codec's endpoints) the JSON envelope.
_PAGE_PREFIXES = ("/c/", "/p/", "/support", "/portal")
_PAGE_PATHS = frozenset({"/codec", "/codec/session"})
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


def parse_count(value: str) -> Rate | None:
    """``"20/minute"``: at most 20 in any minute (the whole count as the burst); ``"off"``."""
    found = _RATE.fullmatch(value.strip().lower())
    if found is None:
        return parse_rate(value, 1)  # "off", or the error that names what is expected
    return parse_rate(value, int(found.group(1)))


def refused_as(scope: Scope, reason: str) -> None:
    """Marks the request as refused at the perimeter, for the metrics and the access log."""
    scope.setdefault("state", {})["refusal"] = reason


def failed_authentication(request: Any) -> None:
    """Counts the request as a failed authentication although it is not answered 401 (a wrong
    ``X-Admin-Token`` is a 403)."""
    request.state.auth_failed = True


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


def _retry_after(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


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
            refused_as(scope, BODY_TOO_LARGE)
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
            refused_as(scope, BODY_TOO_LARGE)
            await _too_large(limit)(scope, receive, send)


def limit_storage(uri: str) -> Storage:
    """``RATE_LIMIT_STORAGE``: ``memory://`` (this process) or ``redis://…`` (shared)."""
    if uri.startswith("memory://"):
        return InProcessCounts()
    storage = storage_from_string("async+" + uri, key_prefix="printflow")
    assert isinstance(storage, Storage)
    return storage


class InProcessCounts(MemoryStorage):
    """limits' in-process storage (``memory://``), with its clean-up of expired entries done
    on the event loop, at most once a second.

    limits' own starts a clean-up after each count, and hands every caller's list of entries
    to a thread in turn: with N callers in the window, each request cost N trips to a thread
    and back (15 ms of CPU a request with 1,000 callers). The clean-up only frees memory, since
    a moving window counts only the entries inside it, so once a second is enough; and it
    awaits nothing, so no count of this loop runs in the middle of it.
    """

    SWEEP_EVERY = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._swept = time.monotonic()

    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - limits' own hook
        if time.monotonic() - self._swept >= self.SWEEP_EVERY:
            self.sweep(time.time())

    def sweep(self, now: float) -> None:
        """Drops the entries and counters expired at ``now`` (a Unix time)."""
        self._swept = time.monotonic()
        for key, entries in list(self.events.items()):
            # Newest first: the entries still alive are a prefix.
            alive = bisect.bisect_left(entries, -now, key=lambda entry: -entry.expiry)
            if alive:
                self.events[key] = entries[:alive]
            else:
                del self.events[key]
                self.locks.pop(key, None)
        for key, expires in list(self.expirations.items()):
            if expires <= now:
                self.storage.pop(key, None)
                del self.expirations[key]
                self.locks.pop(key, None)


class Limiter:
    """Moving-window counts on ``RATE_LIMIT_STORAGE``, shared by the perimeter's limits and
    the portal's sign-in. With Redis every API process on it counts together, so N processes
    give a caller the limit once, not N times. A storage that does not answer lets the request
    through (logged at most once a minute): a limit protects the system, and an outage of its
    counter must not refuse every caller."""

    def __init__(self, uri: str = "memory://") -> None:
        self.storage = limit_storage(uri)
        self._limiter = MovingWindowRateLimiter(self.storage)
        self._complained = 0.0

    async def hit(self, item: RateLimitItem, space: str, key: str) -> bool:
        """Counts one; False when the window was already full."""
        try:
            return await self._limiter.hit(item, space, key)
        except Exception as err:  # noqa: BLE001 - any storage failure lets the request through
            self._complain(err)
            return True

    async def test(self, item: RateLimitItem, space: str, key: str) -> bool:
        """Whether one more would fit, without counting it."""
        try:
            return await self._limiter.test(item, space, key)
        except Exception as err:  # noqa: BLE001 - as in hit
            self._complain(err)
            return True

    async def reset_time(self, item: RateLimitItem, space: str, key: str) -> float:
        """When the window of ``key`` has room again (a Unix time)."""
        try:
            return float((await self._limiter.get_window_stats(item, space, key)).reset_time)
        except Exception as err:  # noqa: BLE001 - as in hit
            self._complain(err)
            return time.time() + 1

    def _complain(self, err: Exception) -> None:
        now = time.monotonic()
        if now - self._complained >= 60:
            self._complained = now
            log.warning("the rate-limit storage failed (%s): requests are not limited", err)


class RateLimits:
    def __init__(self, app: ASGIApp, rate: Rate | None, limiter: Limiter | None = None) -> None:
        self.app = app
        self.rate = rate
        self.item = (
            RateLimitItemPerSecond(rate.burst, rate.window_seconds) if rate is not None else None
        )
        self.limiter = limiter or Limiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        item = self.item
        if item is None or scope["type"] != "http" or scope["path"].startswith(_EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        keys = {
            hashlib.sha256(name + b":" + value).hexdigest()
            for name, value in scope.get("headers", ())
            if name in LIMITED_CREDENTIALS and value
        }
        spent = [key for key in sorted(keys) if not await self.limiter.hit(item, "rate", key)]
        if not spent:
            await self.app(scope, receive, send)
            return
        resets = [await self.limiter.reset_time(item, "rate", key) for key in spent]
        retry_after = _retry_after(max(resets))
        refused_as(scope, RATE_LIMITED)
        response = envelope(
            429,
            RATE_LIMITED,
            f"too many requests with this credential; retry in {retry_after} s",
            {"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)


_LIMITED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Too many attempts</title></head><body><h1>Too many attempts</h1>
<p>Too many links or sign-ins that did not work came from your network. Please try again in
{seconds} seconds.</p></body></html>"""
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}


def _failed(scope: Scope, status: int) -> bool:
    if status == 401:
        return True
    if status == 404 and scope["path"].startswith(TOKEN_PATHS):
        return True
    return bool(scope.get("state", {}).get(_AUTH_FAILED))


class AuthFailures:
    def __init__(self, app: ASGIApp, rate: Rate | None, limiter: Limiter | None = None) -> None:
        self.app = app
        self.item = (
            RateLimitItemPerSecond(rate.burst, rate.window_seconds) if rate is not None else None
        )
        self.limiter = limiter or Limiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        item = self.item
        if item is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = "address:" + (str(client[0]) if client else "unknown")
        refused = False

        async def watch(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and _failed(scope, message["status"]):
                refused = not await self.limiter.hit(item, "auth", key)
            if not refused:
                await send(message)

        await self.app(scope, receive, watch)
        if not refused:
            return
        retry_after = _retry_after(await self.limiter.reset_time(item, "auth", key))
        refused_as(scope, TOO_MANY_FAILURES)
        headers = {"Retry-After": str(retry_after)}
        path = scope["path"]
        response: Response
        if path.startswith(_PAGE_PREFIXES) or path in _PAGE_PATHS:
            page = _LIMITED_PAGE.format(seconds=retry_after)
            response = HTMLResponse(page, 429, headers={**_PAGE_HEADERS, **headers})
        else:
            response = envelope(
                429,
                TOO_MANY_FAILURES,
                "too many failed authentications from your address; "
                f"retry in {retry_after} s with a valid credential",
                {"retry_after": retry_after},
                headers=headers,
            )
        await response(scope, receive, send)
