"""Waiting for something another process or task does: poll until it is there, or fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

# How long a test waits for something before it fails. It only bounds a failure (a passing test
# is no slower): on a loaded machine the dev server can stall for longer than a workflow task's
# timeout (10 s), and the task then runs again.
PATIENCE = 60.0


def poll(what: str, fetch: Callable[[], Any], timeout: float = PATIENCE) -> Any:
    """``fetch()`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


async def apoll(
    what: str,
    fetch: Callable[[], Any],
    timeout: float = PATIENCE,  # noqa: ASYNC109
) -> Any:
    """``await fetch()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await fetch()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


async def eventually(what: str, check: Callable[[], Any], timeout: float = PATIENCE) -> Any:  # noqa: ASYNC109
    """``check()`` until it returns something truthy, without blocking the event loop.

    For what an activity records: it runs in real time, so a time-skipping sleep past the timer
    that starts it can return before the activity has ended."""

    async def fetch() -> Any:
        return check()

    return await apoll(what, fetch, timeout)
