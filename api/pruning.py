"""The API process's pruning of the failed-request log (``request_log``): rows are kept
``KEEP``, and ``prune_forever`` deletes older ones now and then every ``PRUNE_EVERY``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import RequestLog

KEEP = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)

log = logging.getLogger("printflow.api")


async def prune(session: AsyncSession, now: datetime | None = None) -> int:
    """Deletes rows older than ``KEEP``; returns how many."""
    cutoff = (now or datetime.now(UTC)) - KEEP
    result: Any = await session.exec(delete(RequestLog).where(col(RequestLog.created_at) < cutoff))
    await session.commit()
    return int(result.rowcount or 0)


async def prune_forever(sessions: Callable[[], AsyncSession]) -> None:
    """Prunes now, then every ``PRUNE_EVERY``, until cancelled; a failure waits for the next."""
    while True:
        try:
            async with sessions() as session:
                pruned = await prune(session)
            if pruned:
                log.info("pruned %d failed-request log rows older than %d days", pruned, KEEP.days)
        except Exception as err:  # noqa: BLE001 - pruning must never take the API down
            log.warning("pruning the failed-request log failed: %s", type(err).__name__)
        await asyncio.sleep(PRUNE_EVERY.total_seconds())
