"""What the preflight tests share: merchants' print files served by a real local HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers.file_server import FileServer


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = FileServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
