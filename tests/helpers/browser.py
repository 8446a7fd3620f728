"""What the browser tests share: Debian's headless Chromium (never a downloaded one), an app
served on a real socket for it, and the marks that skip a module where Chromium is missing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# A browser module's marks: skipped without Chromium; the browser sees pages, not databases,
# so one backend is enough.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    """``app`` on 127.0.0.1:``port`` (its lifespan already running) until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.025)
    assert server.started, "uvicorn did not start"
    try:
        yield
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium (a playwright ``Browser``), closed at the end."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as found:
        yield found


@asynccontextmanager
async def api_served(
    dev_env: Any, database_url: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[Any, str]]:
    """The API with its worker and webhook receiver (``FullApi``) on a real socket at its
    PUBLIC_BASE_URL, and that URL; ``settings`` as ``full_api_running`` takes them."""
    from devstack.mailsink import free_port
    from tests.helpers.production import full_api_running

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        full_api_running(dev_env, database_url, tmp_path, base_url=base, **settings) as api,
        serving(api.app, port),
    ):
        yield api, base
