"""A local SMTP server that keeps every message instead of delivering it.

printflow always speaks real SMTP (no "print the e-mail" shortcut), so development and the
end-to-end tests need a server to talk to. The sink writes each message as an ``.eml`` file, which
a developer can open in any mail client, and keeps it in memory, so tests can wait for it.

Run on its own with ``python -m devstack.mailsink --port 1025 --dir .data/mail``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

logger = logging.getLogger(__name__)

MessagePredicate = Callable[[EmailMessage], bool]


# Ports handed out, below the kernel's range for outgoing connections (32768 and up on Linux),
# which any client socket of any process may take at any moment. Each test process of a
# parallel run (pytest-xdist names them gw0, gw1, …) draws from a slice of its own, so two
# processes never pick the same port between choosing it and binding it.
PORTS_LOW, PORTS_SLICE, PORTS_SLICES = 20000, 3000, 4
_given: deque[int] = deque(maxlen=1000)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now and not handed out recently by this process (aiosmtpd's
    Controller, the dev stack's processes and the tests' servers need a number before they
    bind)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = PORTS_LOW + (index % PORTS_SLICES) * PORTS_SLICE
    for _ in range(200):
        port = random.randrange(low, low + PORTS_SLICE)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _given.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded slice
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ensure_free(host: str, port: int) -> None:
    """Fail at once on a taken port: aiosmtpd only notices after its ready timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the server itself uses, so a port in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise OSError(
                error.errno, f"mail sink cannot listen on {host}:{port}: {error.strerror}"
            ) from error


def _accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Any credentials are fine: lets an app configured with SMTP_USERNAME/PASSWORD use the sink."""
    return AuthResult(success=True)


class _Handler:
    """aiosmtpd handler; runs on the controller's own thread and event loop."""

    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self._sink._receive(raw)
        return "250 Message accepted for delivery"


class MailSink:
    """An SMTP server on ``host:port`` that stores every message it receives.

    The server runs on a thread of its own (aiosmtpd's ``Controller``), so it keeps answering
    while the caller blocks, and it can be used from sync code (``start_blocking``) and from any
    event loop (``await start()``, ``async with``).
    """

    def __init__(
        self, directory: Path | str | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.host = host
        self.port = port or free_port(host)
        self._messages: list[EmailMessage] = []
        self._files: list[Path] = []
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._controller: Controller | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start_blocking(self) -> None:
        """Bind the port and start serving; returns once the server answers."""
        if self._controller is not None:
            raise RuntimeError("mail sink already running")
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        _ensure_free(self.host, self.port)
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=5.0,
            enable_SMTPUTF8=True,
            authenticator=_accept_any_login,
            auth_require_tls=False,
        )
        try:
            controller.start()
        except BaseException:
            # A failed start leaves the controller's loop open; close it so nothing leaks.
            if controller.loop.is_running():
                controller.stop(no_assert=True)
            elif not controller.loop.is_closed():
                controller.loop.close()
            raise
        self._controller = controller
        where = f", writing to {self.directory}/" if self.directory is not None else ""
        logger.info("mail sink listening on %s:%d%s", self.host, self.port, where)

    def stop_blocking(self) -> None:
        """Stop serving and release the port; stored messages stay readable."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    async def start(self) -> None:
        await asyncio.to_thread(self.start_blocking)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> Self:
        self.start_blocking()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_blocking()

    # -- messages -------------------------------------------------------------------------------

    @property
    def messages(self) -> list[EmailMessage]:
        """Every message received so far, oldest first (a copy: safe to iterate)."""
        with self._lock:
            return list(self._messages)

    @property
    def files(self) -> list[Path]:
        """The ``.eml`` files written so far, in the order of ``messages``."""
        with self._lock:
            return list(self._files)

    def clear(self) -> None:
        """Forget the messages in memory (the files stay)."""
        with self._lock:
            self._messages.clear()
            self._files.clear()

    async def wait_for(
        self,
        predicate: MessagePredicate | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - reads best in tests, and says what arrived
    ) -> EmailMessage:
        """The first message (already received or still to come) that matches ``predicate``.

        Raises ``TimeoutError`` naming what did arrive, which is usually the clue to a failure.
        """
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                subjects = [f"{m['To']}: {m['Subject']}" for m in self.messages]
                raise TimeoutError(
                    f"no matching e-mail within {timeout:g}s; received {len(subjects)}: {subjects}"
                )
            # Polling keeps this usable from any event loop; the server lives on another thread.
            await asyncio.sleep(0.05)

    def _receive(self, raw: bytes) -> None:
        message = cast(EmailMessage, BytesParser(policy=default_policy).parsebytes(raw))
        with self._lock:
            number = next(self._counter)
        path: Path | None = None
        if self.directory is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
            path = self.directory / f"{stamp}-{number}.eml"
            partial = path.with_name(f".{path.name}.partial")
            partial.write_bytes(raw)
            # Rename last, so anything watching the directory never sees half a message.
            partial.replace(path)
        with self._lock:
            self._messages.append(message)
            if path is not None:
                self._files.append(path)
        logger.info(
            "e-mail to %s: %s%s",
            message["To"],
            message["Subject"],
            f" ({path})" if path is not None else "",
        )


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the first line names the port (useful with ``--port 0``)."""
    parser = argparse.ArgumentParser(prog="python -m devstack.mailsink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025, help="0 picks a free port")
    parser.add_argument("--dir", type=Path, default=Path(".data/mail"), help="where .eml files go")
    args = parser.parse_args(argv)
    # Our lines only: aiosmtpd's own INFO logging is noise here.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sink = MailSink(args.dir, host=args.host, port=args.port)
    try:
        sink.start_blocking()
    except OSError as error:
        print(error.strerror or error, file=sys.stderr)
        return 1
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sink.stop_blocking()
    return 0


if __name__ == "__main__":
    sys.exit(main())
