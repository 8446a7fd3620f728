"""``Idempotency-Key`` on every write of the API: a retry gets the first answer, applied once.

For POST, PUT and PATCH under ``/v1/`` that carry the header (1 to 200 printable ASCII
characters, no space; anything else is a 422 ``validation_error``):

- Only an authenticated caller's key is kept: the credential the route wants is checked first
  (``api.deps.caller``: the merchant's X-API-Key, the operator's X-Admin-Token, an agent's
  X-Agent-Token, a facility's bearer token, a personalization token in the path). A request
  without a valid one passes through untouched, and its route refuses it: a stranger writes
  nothing.
- A key belongs to its caller: the scope is the sha256 of that credential (header name and
  value; the path for a personalization token). The credential itself is never stored.
- Before the app runs, a row (scope, key) is inserted in progress with the sha256 of the request
  (method, path, query, body); the primary key picks one among concurrent duplicates. The key
  hashed with the scope (``request.state.idempotency_ref``) is also stored by the writes that
  create something without a natural key (cases, customer contacts, merchants, agents): a
  request that runs again finds what the first run created and answers it.
- An answer below 500 is stored (status, JSON body, content type) before it is sent; a retry
  with the same key and request gets it again with ``Idempotent-Replayed: true``. An answer of
  500 or more (503 too) deletes the row: the write did not happen, or a retry finds its result
  (order Updates apply once: the key is also their Update id). An answer larger than
  ``IDEMPOTENCY_MAX_ANSWER_BYTES`` (64 KiB) is not kept either (the row is deleted): a retry runs
  again and finds the same result.
- If the answer cannot be stored (the database stopped answering after the app committed), the
  app's answer is sent as it is, never a 503 for a write that happened; the row stays in
  progress and is taken over 60 s later, when a retry runs again and finds what was made.
- The same key with another request: 422 ``idempotency_key_reused``. While the first one runs:
  409 ``idempotency_key_in_progress`` with ``Retry-After: 1``; a row in progress for 60 s was
  abandoned (its process died) and the next retry takes it over.
- The database failing before the app runs is a 503 ``temporarily_unavailable`` with
  Retry-After, never a 500; nothing ran.

Requests without the header pass through untouched. Rows are deleted ``IDEMPOTENCY_TTL`` (24 h)
after they were made (``api.services.retention``). Replays are marked in
``scope["state"]["idempotent_replay"]`` for ``/metrics`` and the access log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import Unavailable, envelope
from db.engine import insert_statement, utcnow
from db.models import IdempotentRequest

log = logging.getLogger("printflow.api")

ABANDONED_AFTER = timedelta(seconds=60)
SHOWN_ONCE = frozenset({"api_key", "webhook_secret", "token", "owner_invite_url"})
WITHHELD = "(shown once, in the first answer; not kept)"
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_KEY = re.compile(rb"[\x21-\x7e]{1,200}")
_DATABASE_ERRORS = (SQLAlchemyError, OSError)  # OSError: ConnectionError, TimeoutError
_Row = IdempotentRequest


# Who is calling, as the route would check it: the credential that scopes the key, or None.
Caller = Callable[[Any, Headers, str], Awaitable[bytes | None]]


class IdempotentRequests:
    def __init__(self, app: ASGIApp, caller: Caller) -> None:
        self.app = app
        self.caller = caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writes = scope["type"] == "http" and scope["method"] in _WRITES
        headers = Headers(scope=scope) if writes and scope["path"].startswith("/v1/") else None
        raw = headers.get("idempotency-key") if headers is not None else None
        if headers is None or raw is None:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        try:
            credential = await self.caller(state, headers, scope["path"])
        except _DATABASE_ERRORS as err:
            await _unavailable(err)(scope, receive, send)
            return
        if credential is None:  # the route refuses it; nothing is kept for a stranger
            await self.app(scope, receive, send)
            return
        raw_key = raw.encode("latin-1")
        if not _KEY.fullmatch(raw_key):
            why = "Idempotency-Key: 1 to 200 printable ASCII characters, without spaces"
            field = [{"field": "header.Idempotency-Key", "message": why, "type": "invalid"}]
            await envelope(422, "validation_error", why, field)(scope, receive, send)
            return
        parts, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        path = scope["path"].encode("utf-8", "surrogatepass")
        owner = _sha256(credential)
        request = _sha256(scope["method"].encode(), path, scope.get("query_string", b""), body)
        key = raw_key.decode("ascii")
        try:
            claimed = await _claim(state, owner, key, request)
        except _DATABASE_ERRORS as err:
            await _unavailable(err)(scope, receive, send)
            return
        if isinstance(claimed, _Row):
            if claimed.request_hash == request and claimed.status_code is not None:
                scope.setdefault("state", {})["idempotent_replay"] = True
            await _answer_for(claimed, request)(scope, receive, send)
            return
        scope.setdefault("state", {})["idempotency_ref"] = reference(owner, key)

        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, replay, capture)
        except Exception:
            await _forget(state, owner, key, claimed)
            raise  # the error handlers outside answer it (a 503 or a 500)
        status = int(start.get("status", 500))
        answer = b"".join(chunks)
        if status >= 500 or len(answer) > state.settings.idempotency_max_answer_bytes:
            await _forget(state, owner, key, claimed)
        else:
            content_type = dict(start.get("headers", ())).get(b"content-type", b"")
            try:
                await _complete(state, owner, key, claimed, status, answer, content_type)
            except _DATABASE_ERRORS as err:
                # The write happened: its answer goes out. The row stays in progress until it
                # is abandoned; the retry that takes it over finds what this run made.
                log.warning(
                    "idempotency: answer not kept, row left in progress (%s)", type(err).__name__
                )
        await send(start)
        await send({"type": "http.response.body", "body": answer, "more_body": False})


def reference(owner: str, key: str) -> str:
    """The key as the rows a write creates keep it: hashed with its caller's scope."""
    return _sha256(b"idempotency-ref", owner.encode(), key.encode())


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:  # length-prefixed, so no two different requests hash alike
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _in_progress(owner: str, key: str, claimed: Any) -> Any:
    """The row (owner, key) while in progress, claimed at ``claimed`` (a time or a condition)."""
    when = claimed if not isinstance(claimed, datetime) else col(_Row.created_at) == claimed
    return (
        (col(_Row.scope) == owner) & (col(_Row.key) == key) & col(_Row.status_code).is_(None) & when
    )


async def _claim(state: Any, owner: str, key: str, request: str) -> datetime | _Row:
    """Our claim time if this request runs now, else the row that is there."""
    for _ in range(3):  # the row may vanish in between (its request answered 5xx): try again
        now = utcnow()
        async with state.sessions() as session:
            new = {"scope": owner, "key": key, "request_hash": request, "created_at": now}
            insert = (
                insert_statement(state.engine.dialect.name, _Row)
                .values([new])
                .returning(col(_Row.key))
            )
            ours = bool((await session.exec(insert)).all())  # rowcount is -1 on psycopg here
            if not ours:  # taken; abandoned by a process that died?
                abandoned = _in_progress(owner, key, col(_Row.created_at) < now - ABANDONED_AFTER)
                taken = await session.exec(
                    update(_Row).where(abandoned).values(request_hash=request, created_at=now)
                )
                ours = taken.rowcount == 1
            await session.commit()
            if ours:
                return now
            row = await session.get(_Row, (owner, key))
            if row is not None:
                return row
    raise OSError("idempotency row kept changing")


async def _complete(
    state: Any, owner: str, key: str, claimed: datetime, status: int, body: bytes, ctype: bytes
) -> None:
    async with state.sessions() as session:
        values = {
            "status_code": status,
            "response_body": _without_secrets(body),
            "content_type": ctype.decode("latin-1") or None,
            "completed_at": utcnow(),
        }
        await session.exec(update(_Row).where(_in_progress(owner, key, claimed)).values(**values))
        await session.commit()


def _without_secrets(body: bytes) -> str:
    """The answer as kept: secrets shown once (a new merchant's API key and webhook secret, an
    agent's token) are never stored, so a replay says where they went instead."""
    text = body.decode("utf-8", "replace")  # the API answers JSON only
    try:
        answer = json.loads(text)
    except ValueError:
        return text
    if isinstance(answer, dict) and SHOWN_ONCE & answer.keys():
        # A secret that was never there (no owner, no invite link) stays null.
        return json.dumps(
            {k: WITHHELD if k in SHOWN_ONCE and v is not None else v for k, v in answer.items()}
        )
    return text


async def _forget(state: Any, owner: str, key: str, claimed: datetime) -> None:
    """Deletes our row so a retry runs again; if that fails, it is abandoned after 60 s."""
    try:
        async with state.sessions() as session:
            await session.exec(delete(_Row).where(_in_progress(owner, key, claimed)))
            await session.commit()
    except _DATABASE_ERRORS as err:
        log.warning("idempotency row left in progress: %s", type(err).__name__)


def _answer_for(row: _Row, request: str) -> Response:
    if row.request_hash != request:
        return envelope(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was sent with another request; use a new key for a new request",
        )
    if row.status_code is None:
        return envelope(
            409,
            "idempotency_key_in_progress",
            "a request with this Idempotency-Key is still running; retry in a moment",
            headers={"Retry-After": "1"},
        )
    headers = {"Idempotent-Replayed": "true"}
    if row.content_type:
        headers["Content-Type"] = row.content_type
    return Response(row.response_body or "", status_code=row.status_code, headers=headers)


def _unavailable(err: Exception) -> Response:
    log.warning("idempotency: the database did not answer (%s)", type(err).__name__)
    return envelope(
        503,
        "temporarily_unavailable",
        "the database did not answer; retry in a moment",
        headers={"Retry-After": str(Unavailable.retry_after)},
    )
