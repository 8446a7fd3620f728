"""``X-Request-Id`` on every answer, and the log of merchants' failed requests.

- Every HTTP answer carries ``X-Request-Id``: the caller's own when it sent a valid one (1 to 100
  of ``A-Z a-z 0-9 . _ -``), else a new ``req_`` + 24 URL-safe random characters. Errors too,
  unknown paths, the idempotency middleware's replays and the 500 of an unexpected error: this
  middleware wraps the whole app, Starlette's error middleware included (``api.main``).
- The id is in ``scope["state"]["request_id"]`` (``request.state.request_id`` in a route) and in
  the access log line (``api.metrics``).
- An answer of 400 or above to a merchant (a request whose ``X-API-Key`` is a merchant's) is
  recorded in ``request_log`` after the answer has been sent, but for a 401 (nobody
  authenticated) and a 429 (``api.perimeter``'s limits: counted in ``/metrics``, never written
  row by row, so a limited caller costs the database nothing): request id, method, route template
  (``/v1/orders/{order_id}``, ``unmatched`` when no route matched), status and the envelope's
  ``error.code``. Never a body, a header, a raw path or a query string. Support reads them
  through ``api.services.request_log``; writing one that fails is logged, never the caller's
  problem (the answer is gone already).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from typing import Any

from sqlmodel import select
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.engine import utcnow
from db.models import Merchant, RequestLog

HEADER = "X-Request-Id"
_VALID = re.compile(rb"[A-Za-z0-9._\-]{1,100}")
# Error envelopes are small; a body beyond this is not read for its code.
_MAX_ERROR_BODY = 16 * 1024
_WRITE_TIMEOUT = 5.0
# Nobody authenticated (401), or a limit refused it before anything ran (429).
_NOT_RECORDED = frozenset({401, 429})

log = logging.getLogger("printflow.api")


def new_request_id() -> str:
    return "req_" + secrets.token_urlsafe(18)  # 24 characters, 144 random bits


def valid_request_id(value: bytes) -> bool:
    return _VALID.fullmatch(value) is not None


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        incoming = headers.get(b"x-request-id")
        if incoming is not None and valid_request_id(incoming):
            request_id = incoming.decode("ascii")
        else:
            request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 0
        error_body: list[bytes] = []

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = request_id
            elif message["type"] == "http.response.body" and status >= 400:
                if sum(map(len, error_body)) < _MAX_ERROR_BODY:
                    error_body.append(message.get("body", b""))
            await send(message)

        api_key = headers.get(b"x-api-key")
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if status >= 400 and status not in _NOT_RECORDED and api_key:
                await _record(scope, request_id, status, b"".join(error_body), api_key)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template)[:200] if template else "unmatched"


def _error_code(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code[:64] if isinstance(code, str) else None


async def _record(scope: Scope, request_id: str, status: int, body: bytes, api_key: bytes) -> None:
    """Writes the failed request's row; any failure is logged and swallowed."""
    try:
        state: Any = scope["app"].state
        async with asyncio.timeout(_WRITE_TIMEOUT), state.sessions() as session:
            # Set by the API-key dependency when a route ran; otherwise (no route matched, a
            # guard or the idempotency middleware answered) the key is looked up here.
            merchant_id = scope.get("state", {}).get("merchant_id")
            if merchant_id is None:
                key_hash = hashlib.sha256(api_key).hexdigest()
                found = await session.exec(
                    select(Merchant.id).where(Merchant.api_key_hash == key_hash)
                )
                merchant_id = found.first()
                if merchant_id is None:
                    return  # not a merchant's request: nobody to show it to
            session.add(
                RequestLog(
                    request_id=request_id,
                    merchant_id=merchant_id,
                    method=str(scope.get("method", ""))[:10],
                    route=_route(scope),
                    status=status,
                    error_code=_error_code(body),
                    created_at=utcnow(),
                )
            )
            await session.commit()
    except Exception as err:  # noqa: BLE001 - the answer is sent; this must not fail it
        log.warning("failed-request log: could not record %s (%s)", request_id, type(err).__name__)
