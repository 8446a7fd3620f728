"""Merchants' print files for tests: a real HTTP server on 127.0.0.1 whose paths the test sets.

It runs in the test's event loop (uvicorn on a socket bound to port 0, like
``webhook_receiver.py``). Each path answers what the test put there: a file (with its ``ETag``
and ``Last-Modified``, and a 304 to a request that names its ETag), a status, a redirect, a
body streamed chunk by chunk (with a delay, with or without a ``Content-Length``, each chunk
counted as it is handed to the server, so a test sees how much a client took before it hung
up) or an answer that stalls. Every path requested is
recorded in ``hits``, with its headers in ``headers``.

``start(unix_socket=…, tls=…)`` serves https on a Unix socket instead: for a client whose
transport takes every connection there, as a network would route an address to this server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class File:
    data: bytes
    content_type: str | None = "application/pdf"
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Stream:
    chunk: bytes
    count: int
    delay: float  # seconds between chunks
    content_length: int | None  # None: chunked, no Content-Length


@dataclass(frozen=True)
class Status:
    code: int
    body: bytes


@dataclass(frozen=True)
class Redirect:
    location: str
    code: int


@dataclass(frozen=True)
class Stall:
    seconds: float  # before the answer's headers


Answer = File | Stream | Status | Redirect | Stall


@dataclass
class FileServer:
    answers: dict[str, Answer] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    chunks_sent: dict[str, int] = field(default_factory=dict)
    origin: str = ""  # http://127.0.0.1:<port>, or what the test calls the Unix socket's server
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    # -- what a path answers (each returns the path's URL)

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def file(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str | None = "application/pdf",
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> str:
        self.answers[path] = File(data, content_type, etag, last_modified)
        return self.url(path)

    def stream(
        self,
        path: str,
        *,
        chunks: int,
        chunk_size: int = 16_384,
        delay: float = 0.0,
        content_length: int | None = None,
    ) -> str:
        """``chunks`` chunks of ``chunk_size`` bytes, ``delay`` seconds apart; with
        ``content_length`` that header (true or not), else chunked."""
        self.answers[path] = Stream(b"\x25" * chunk_size, chunks, delay, content_length)
        return self.url(path)

    def status(self, path: str, code: int, body: bytes = b"") -> str:
        self.answers[path] = Status(code, body)
        return self.url(path)

    def redirect(self, path: str, location: str, code: int = 302) -> str:
        self.answers[path] = Redirect(location, code)
        return self.url(path)

    def stall(self, path: str, seconds: float) -> str:
        self.answers[path] = Stall(seconds)
        return self.url(path)

    # -- running

    async def start(
        self, *, unix_socket: Path | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        """Serves http on 127.0.0.1 (port 0), or on ``unix_socket``; ``tls`` (certificate
        file, key file) makes it https."""
        if unix_socket is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            scheme = "https" if tls else "http"
            self.origin = self.origin or f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(unix_socket))
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET"])])
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(500):  # uvicorn has no "started" event; it starts in milliseconds
            if self._server.started:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the file server did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        self.hits.append(path)
        self.headers.append(dict(request.headers))
        answer = self.answers.get(path)
        if isinstance(answer, File):
            if answer.etag is not None and request.headers.get("if-none-match") == answer.etag:
                return Response(status_code=304, headers={"ETag": answer.etag})
            headers = {
                name: value
                for name, value in (("ETag", answer.etag), ("Last-Modified", answer.last_modified))
                if value is not None
            }
            return Response(answer.data, media_type=answer.content_type, headers=headers)
        if isinstance(answer, Status):
            return Response(answer.body, status_code=answer.code)
        if isinstance(answer, Redirect):
            return Response(status_code=answer.code, headers={"Location": answer.location})
        if isinstance(answer, Stall):
            deadline = asyncio.get_running_loop().time() + answer.seconds
            while asyncio.get_running_loop().time() < deadline:
                if await request.is_disconnected():
                    return Response(status_code=499)
                await asyncio.sleep(0.02)
            return Response(b"late", media_type="application/pdf")
        if isinstance(answer, Stream):
            headers = {}
            if answer.content_length is not None:
                headers["Content-Length"] = str(answer.content_length)
            return StreamingResponse(
                self._chunks(path, answer), media_type="application/pdf", headers=headers
            )
        return Response(status_code=404)

    async def _chunks(self, path: str, stream: Stream) -> AsyncIterator[bytes]:
        self.chunks_sent[path] = 0
        for _ in range(stream.count):
            self.chunks_sent[path] += 1
            yield stream.chunk
            if stream.delay:
                await asyncio.sleep(stream.delay)
