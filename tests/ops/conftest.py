"""Operations tests: migrations, probes, metrics, logs, start-up checks, shutdown, compose.

``TcpProxy`` stands between the API and a real dependency (PostgreSQL, the Temporal dev server)
so a test can take the dependency away and bring it back, the way a network partition would,
without stopping a server other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from devstack.stack import REPO_ROOT


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` drops every connection and refuses
    new ones until ``restore()``, on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def run_python(
    args: list[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` in the repository with exactly ``env`` on top of PATH/HOME."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PRINTFLOW_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def facility(simulator_url: str, every_seconds: int = 2, token: str = "tok-ops") -> dict[str, Any]:
    """One facility for every country with a cutoff every few seconds, at ``simulator_url``."""
    return {
        "id": "fast",
        "name": "Fast Prints",
        "timezone": "Europe/Berlin",
        "countries": ["*"],
        "api_url": simulator_url,
        "api_token": token,
        "schedule": {"every_seconds": every_seconds},
    }


def log_lines(path: Path) -> Iterator[str]:
    """The lines a process wrote, without devstack's ``=== devstack …`` start markers."""
    for line in path.read_text(errors="replace").splitlines():
        if line.strip() and not line.startswith("=== devstack "):
            yield line
