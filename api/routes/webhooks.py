"""What was sent to the merchant's webhook, and sending it again (``X-API-Key``).

- ``GET /v1/webhooks/events``: the events of the merchant's orders, with where each stands.
- ``GET /v1/webhooks/deliveries``: every delivery attempt, newest first; a row with
  ``outcome: "given_up"`` marks the end of an event's 25 hours of retries.
- ``POST /v1/webhooks/events/{event_id}/redeliver``: queue the event again, same id and body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import MerchantDep, SessionDep, SettingsDep, TemporalDep
from api.schemas import DeliveryPage, Redelivery, WebhookEventPage
from api.services import webhooks

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.get("/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    merchant: MerchantDep,
    session: SessionDep,
    event_id: str | None = None,
    order_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> DeliveryPage:
    return await webhooks.list_deliveries(
        session, merchant, event_id=event_id, order_id=order_id, limit=limit, cursor=cursor
    )


@router.get("/events", response_model=WebhookEventPage)
async def list_events(
    merchant: MerchantDep,
    session: SessionDep,
    order_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> WebhookEventPage:
    """Newest first; ``delivered_at`` is null while an event waits or after it was given up."""
    return await webhooks.list_events(
        session, merchant, order_id=order_id, limit=limit, cursor=cursor
    )


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
    return await webhooks.redeliver(session, temporal, settings, merchant, event_id)
