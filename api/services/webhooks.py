"""The merchant's webhook log: events, delivery attempts, and queuing an event again."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ApiError, Conflict, NotFound
from api.pagination import newest_first
from api.schemas import (
    DeliveryOutcome,
    DeliveryPage,
    DeliveryPublic,
    Redelivery,
    WebhookEventPage,
    WebhookEventPublic,
)
from db.models import Merchant, WebhookDelivery, WebhookEvent
from runtime.settings import Settings
from workflows.client import enqueue_deliveries


def _id_cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise ApiError("cursor is not one this API returned", code="invalid_cursor")
    return int(value)


def _outcome(row: WebhookDelivery) -> DeliveryOutcome:
    if row.succeeded:
        return "succeeded"
    # attempt 0 is the record written when retries ran out (see activities/webhooks/delivery.py).
    return "given_up" if row.attempt == 0 else "failed"


async def list_deliveries(
    session: AsyncSession,
    merchant: Merchant,
    *,
    event_id: str | None,
    order_id: str | None,
    limit: int,
    cursor: str | None,
) -> DeliveryPage:
    """Every attempt, newest first; ids grow with every attempt, so they are the cursor."""
    query = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
        .where(WebhookDelivery.merchant_id == merchant.id)
    )
    if event_id is not None:
        query = query.where(WebhookDelivery.event_id == event_id)
    if order_id is not None:
        query = query.where(WebhookEvent.order_id == order_id)
    after = _id_cursor(cursor)
    if after is not None:
        query = query.where(col(WebhookDelivery.id) < after)
    # Ids grow with every attempt, so they order the list and serve as the cursor.
    query = query.order_by(col(WebhookDelivery.id).desc()).limit(limit + 1)
    rows = list(await session.exec(query))
    page = rows[:limit]
    data = [
        DeliveryPublic(
            id=d.id or 0,
            event_id=d.event_id,
            event_type=e.type,
            order_id=e.order_id,
            attempt=d.attempt,
            outcome=_outcome(d),
            url=d.url,
            status_code=d.status_code,
            error=d.error,
            duration_ms=d.duration_ms,
            at=d.at,
        )
        for d, e in page
    ]
    next_cursor = str(page[-1][0].id) if len(rows) > limit else None
    return DeliveryPage(data=data, next_cursor=next_cursor)


async def list_events(
    session: AsyncSession,
    merchant: Merchant,
    *,
    order_id: str | None,
    limit: int,
    cursor: str | None,
) -> WebhookEventPage:
    """Newest first; ``delivered_at`` is null while an event waits or after it was given up."""
    query = select(WebhookEvent).where(WebhookEvent.merchant_id == merchant.id)
    if order_id is not None:
        query = query.where(WebhookEvent.order_id == order_id)
    page, next_cursor = await newest_first(session, query, WebhookEvent, limit=limit, cursor=cursor)
    data = [
        WebhookEventPublic(
            id=e.id,
            type=e.type,
            order_id=e.order_id,
            created_at=e.created_at,
            delivered_at=e.delivered_at,
            payload=e.payload,
        )
        for e in page
    ]
    return WebhookEventPage(data=data, next_cursor=next_cursor)


async def redeliver(
    session: AsyncSession, temporal: Client, settings: Settings, merchant: Merchant, event_id: str
) -> Redelivery:
    event = await session.get(WebhookEvent, event_id)
    if event is None or event.merchant_id != merchant.id:
        raise NotFound(f"no webhook event {event_id}", code="webhook_event_not_found")
    if not merchant.webhook_url:
        raise Conflict("the merchant has no webhook_url", code="webhook_not_configured")
    # Behind any events of the same order still queued: the order of events is kept.
    await enqueue_deliveries(
        temporal, settings.task_queue, event.order_id or event.id, [event.id], redeliver=True
    )
    return Redelivery(event_id=event.id)
