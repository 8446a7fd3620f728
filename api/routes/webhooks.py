"""What was sent to the merchant's webhook, and sending it again (``X-API-Key``).

- ``GET /v1/webhooks/events``: the events of the merchant's orders, with where each stands.
- ``GET /v1/webhooks/deliveries``: every delivery attempt, newest first; a row with
  ``outcome: "given_up"`` marks the end of an event's 25 hours of retries.
- ``POST /v1/webhooks/events/{event_id}/redeliver``: queue the event again, same id and body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import col, select

from activities.webhooks import enqueue_deliveries
from api.deps import MerchantDep, SessionDep, SettingsDep, TemporalDep
from api.errors import ApiError, Conflict, NotFound
from api.pagination import newest_first
from db.models import WebhookDelivery, WebhookEvent

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Outcome = Literal["succeeded", "failed", "given_up"]


class DeliveryPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    order_id: str | None
    attempt: int
    outcome: Outcome
    url: str
    status_code: int | None
    error: str | None
    duration_ms: int
    at: datetime


class DeliveryPage(BaseModel):
    data: list[DeliveryPublic]
    next_cursor: str | None


class EventPublic(BaseModel):
    id: str
    type: str
    order_id: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


class EventPage(BaseModel):
    data: list[EventPublic]
    next_cursor: str | None


class Redelivery(BaseModel):
    event_id: str
    queued: bool = True


def _id_cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise ApiError("cursor is not one this API returned", code="invalid_cursor")
    return int(value)


def _outcome(row: WebhookDelivery) -> Outcome:
    if row.succeeded:
        return "succeeded"
    # attempt 0 is the record written when retries ran out (see activities/webhooks.py).
    return "given_up" if row.attempt == 0 else "failed"


@router.get("/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    merchant: MerchantDep,
    session: SessionDep,
    event_id: str | None = None,
    order_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> DeliveryPage:
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


@router.get("/events", response_model=EventPage)
async def list_events(
    merchant: MerchantDep,
    session: SessionDep,
    order_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> EventPage:
    """Newest first; ``delivered_at`` is null while an event waits or after it was given up."""
    query = select(WebhookEvent).where(WebhookEvent.merchant_id == merchant.id)
    if order_id is not None:
        query = query.where(WebhookEvent.order_id == order_id)
    page, next_cursor = await newest_first(session, query, WebhookEvent, limit=limit, cursor=cursor)
    data = [
        EventPublic(
            id=e.id,
            type=e.type,
            order_id=e.order_id,
            created_at=e.created_at,
            delivered_at=e.delivered_at,
            payload=e.payload,
        )
        for e in page
    ]
    return EventPage(data=data, next_cursor=next_cursor)


@router.post(
    "/events/{event_id}/redeliver",
    status_code=202,
    response_model=Redelivery,
    responses={
        404: {"description": "no such event"},
        409: {"description": "webhook_not_configured: the merchant has no webhook_url"},
    },
)
async def redeliver(
    event_id: str,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
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
