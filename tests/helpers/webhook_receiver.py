"""A merchant's webhook receiver for tests: a real HTTP server on 127.0.0.1 that verifies.

It runs in the test's event loop (uvicorn on a socket bound to port 0), records every request
with what it answered, checks each signature the way docs/webhooks.md tells merchants to, and
can be told to fail: until a moment (on any clock, e.g. the time-skipping server's), or always
for some event ids.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from integrations.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

Clock = Callable[[], Awaitable[datetime]]


async def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Received:
    event_id: str | None
    timestamp: str | None
    signature: str | None
    body: bytes
    at: datetime
    answered: int
    verified: bool

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    secret: str | None = None
    clock: Clock = _wall_clock
    fail_until: datetime | None = None
    fail_events: set[str] = field(default_factory=set)
    requests: list[Received] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hooks/printflow"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/hooks/printflow", self._handle, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(500):  # uvicorn has no "started" event; it starts in milliseconds
            if self._server.started:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the webhook receiver did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def _handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        now = await self.clock()
        event_id = request.headers.get(EVENT_ID_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        # The signature is checked against the wall clock: it is what the sender stamped.
        verified = self.secret is not None and verify_signature(
            self.secret, body, timestamp, signature
        )
        failing = (self.fail_until is not None and now < self.fail_until) or (
            event_id in self.fail_events
        )
        answered = 503 if failing else (200 if verified else 400)
        self.requests.append(
            Received(event_id, timestamp, signature, body, now, answered, verified)
        )
        return JSONResponse({"ok": answered == 200}, status_code=answered)

    # -- what tests look at

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.answered == 200]

    def accepted_ids(self) -> list[str]:
        return [str(r.event_id) for r in self.accepted()]

    def attempts_of(self, event_id: str) -> list[Received]:
        return [r for r in self.requests if r.event_id == event_id]

    async def wait_for(
        self,
        predicate: Callable[[Receiver], bool],
        timeout: float = 30.0,  # noqa: ASYNC109 - a test helper's deadline
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                got = [(r.event_id, r.answered) for r in self.requests]
                raise AssertionError(f"the receiver never saw that; it got {got}")
            await asyncio.sleep(0.05)
