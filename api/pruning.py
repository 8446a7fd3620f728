"""The API process's pruning, now and then every ``PRUNE_EVERY`` (``prune_forever``):

- the failed-request log (``request_log``): rows are kept ``KEEP`` (30 days);
- ``idempotent_requests``: answers to ``Idempotency-Key`` writes (and rows abandoned in
  progress) are kept ``IDEMPOTENCY_TTL`` (24 h) from when they were claimed;
- the outboxes of workflow starts (``order_starts``, ``support_case_starts``,
  ``customer_contact_starts``): the relay deletes a row once its workflow has started; a row
  whose order, case or contact is older than ``IDEMPOTENCY_TTL`` and is still there is deleted
  only when Temporal knows its workflow. A row whose workflow never started is never deleted:
  the relay keeps trying, and the row is what lets it;
- ``quotes``: a quote is kept ``IDEMPOTENCY_TTL`` after its ``expires_at``. An order naming an
  expired quote is refused anyway (422 ``quote_expired``), and a retry of an order already
  created is answered from the order, never from its quote; keeping the row that long only means
  that a late caller still hears ``quote_expired``, not ``unknown_quote``, meanwhile;
- the portal's sessions once expired, and its e-mailed links a day after they expired.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from db.engine import utcnow
from db.models import (
    CustomerContact,
    CustomerContactStart,
    IdempotentRequest,
    Order,
    OrderStart,
    PortalSession,
    PortalToken,
    Quote,
    RequestLog,
    SupportCase,
    SupportCaseStart,
)
from workflows.client import workflow_status

KEEP = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)
# Outbox rows looked at per table and round: each costs Temporal a describe.
OUTBOX_BATCH = 100
# Each outbox, its key, and the table of what it starts (whose row tells the age).
OUTBOXES: tuple[tuple[Any, Any, Any], ...] = (
    (OrderStart, OrderStart.order_id, Order),
    (SupportCaseStart, SupportCaseStart.case_id, SupportCase),
    (CustomerContactStart, CustomerContactStart.contact_id, CustomerContact),
)

log = logging.getLogger("printflow.api")


async def prune(session: AsyncSession, now: datetime | None = None) -> int:
    """Deletes rows older than ``KEEP``; returns how many."""
    cutoff = (now or utcnow()) - KEEP
    result: Any = await session.exec(delete(RequestLog).where(col(RequestLog.created_at) < cutoff))
    await session.commit()
    return int(result.rowcount or 0)


async def prune_idempotency(
    session: AsyncSession, ttl: timedelta, now: datetime | None = None
) -> int:
    """Deletes ``idempotent_requests`` rows claimed more than ``ttl`` ago; returns how many."""
    cutoff = (now or utcnow()) - ttl
    result: Any = await session.exec(
        delete(IdempotentRequest).where(col(IdempotentRequest.created_at) < cutoff)
    )
    await session.commit()
    return int(result.rowcount or 0)


async def prune_quotes(session: AsyncSession, grace: timedelta, now: datetime | None = None) -> int:
    """Deletes the quotes that expired more than ``grace`` ago; returns how many."""
    cutoff = (now or utcnow()) - grace
    result: Any = await session.exec(delete(Quote).where(col(Quote.expires_at) < cutoff))
    await session.commit()
    return int(result.rowcount or 0)


async def prune_outboxes(
    sessions: Callable[[], AsyncSession],
    client: Client,
    ttl: timedelta,
    now: datetime | None = None,
) -> int:
    """Deletes the outbox rows older than ``ttl`` whose workflow Temporal knows (started, and
    maybe closed since); returns how many. Rows whose workflow it does not know stay."""
    cutoff = (now or utcnow()) - ttl
    pruned = 0
    for outbox, key, table in OUTBOXES:
        async with sessions() as session:
            old = await session.exec(
                select(key)
                .join(table, col(table.id) == col(key))
                .where(col(table.created_at) < cutoff)
                .order_by(col(table.created_at))
                .limit(OUTBOX_BATCH)
            )
            candidates = list(old.all())
        started = [
            row_id for row_id in candidates if await workflow_status(client, row_id) is not None
        ]
        if not started:
            continue
        async with sessions() as session:
            result: Any = await session.exec(delete(outbox).where(col(key).in_(started)))
            await session.commit()
        pruned += int(result.rowcount or 0)
    return pruned


async def prune_portal(session: AsyncSession, now: datetime | None = None) -> int:
    """Deletes expired portal sessions and links a day past their end; returns how many."""
    now = now or utcnow()
    ended: Any = await session.exec(
        delete(PortalSession).where(col(PortalSession.expires_at) <= now)
    )
    links: Any = await session.exec(
        delete(PortalToken).where(col(PortalToken.expires_at) <= now - timedelta(days=1))
    )
    await session.commit()
    return int(ended.rowcount or 0) + int(links.rowcount or 0)


async def prune_forever(
    sessions: Callable[[], AsyncSession],
    client: Client | None = None,
    idempotency_ttl: timedelta = timedelta(hours=24),
) -> None:
    """Prunes now, then every ``PRUNE_EVERY``, until cancelled; a failure waits for the next.
    Without ``client`` (Temporal), the outboxes are left alone."""
    while True:
        try:
            async with sessions() as session:
                pruned = await prune(session)
            if pruned:
                log.info("pruned %d failed-request log rows older than %d days", pruned, KEEP.days)
            async with sessions() as session:
                pruned = await prune_idempotency(session, idempotency_ttl)
            if pruned:
                log.info("pruned %d idempotency rows older than %s", pruned, idempotency_ttl)
            async with sessions() as session:
                pruned = await prune_quotes(session, idempotency_ttl)
            if pruned:
                log.info("pruned %d quotes expired more than %s ago", pruned, idempotency_ttl)
            async with sessions() as session:
                pruned = await prune_portal(session)
            if pruned:
                log.info("pruned %d expired portal sessions and links", pruned)
            if client is not None:
                pruned = await prune_outboxes(sessions, client, idempotency_ttl)
                if pruned:
                    log.info("pruned %d outbox rows of started workflows", pruned)
        except Exception as err:  # noqa: BLE001 - pruning must never take the API down
            log.warning("pruning failed: %s", type(err).__name__)
        await asyncio.sleep(PRUNE_EVERY.total_seconds())
