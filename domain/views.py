"""The order as merchants see it, in API answers and in webhook payloads alike.

The workflow's state plus what a merchant needs to act on it (``allowed_actions``,
``editable_until``). It lives below the API because webhooks (sent by activities) carry the very
same shape; ``api.schemas`` re-exports it with the API's other public models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from domain.orders import (
    CancelReasonCode,
    DeliveryEstimate,
    EventType,
    FileState,
    Hold,
    ItemState,
    OrderState,
    PersonalizationStatus,
    Price,
    Shipment,
    Status,
    StoredAddress,
    TimelineEvent,
    allowed_actions,
    editable_until,
)
from domain.preflight import FilePreflight


class ItemPersonalization(BaseModel):
    fields: list[Any]
    status: PersonalizationStatus
    values: dict[str, str] | None
    # The checks of the customer's images, by field name (docs/preflight.md).
    image_checks: dict[str, FilePreflight] = {}


class ItemPublic(BaseModel):
    item_reference_id: str
    product_uid: str
    quantity: int
    files: list[FileState]
    personalization: ItemPersonalization | None


class FacilityPublic(BaseModel):
    id: str
    name: str
    timezone: str


class AllowedActions(BaseModel):
    cancel: bool
    update_address: bool
    approve: bool
    reorder: bool


class TimelineEventPublic(BaseModel):
    at: datetime
    type: EventType
    detail: dict[str, Any] | str | None


class OrderPublic(BaseModel):
    id: str
    merchant_id: str
    order_reference_id: str
    # What the customer quotes to the merchant, and the merchant to printflow (PF-XXXXXXXX).
    support_id: str | None
    customer_reference_id: str | None
    status: Status
    approval: str
    items: list[ItemPublic]
    shipping_address: StoredAddress
    facility: FacilityPublic
    cutoff_at: datetime | None
    editable_until: datetime | None
    allowed_actions: AllowedActions
    job_id: str | None
    hold: Hold | None
    cancel_reason: str | None
    cancel_reason_code: CancelReasonCode | None
    shipments: list[Shipment]
    reorder_of: str | None
    reorders: list[str]
    metadata: dict[str, Any] | None
    # The catalog's terms (docs/catalog.md); null in orders created before the catalog.
    shipping_method: str | None = None
    price: Price | None = None
    ships_by: datetime | None = None
    delivery_estimate: DeliveryEstimate | None = None
    # Not shipped by ``ships_by``: the timeline's ``late`` entry has the new estimate.
    late: bool = False
    events: list[TimelineEventPublic]
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    data: list[OrderPublic]
    next_cursor: str | None


def order_public(
    state: OrderState,
    events: list[TimelineEvent],
    now: datetime,
    reorders: list[str] | None = None,
) -> OrderPublic:
    return OrderPublic(
        id=state.order_id,
        merchant_id=state.merchant_id,
        order_reference_id=state.order_reference_id,
        support_id=state.support_id,
        customer_reference_id=state.customer_reference_id,
        status=state.status,
        approval=state.approval,
        items=[
            ItemPublic(
                item_reference_id=i.item_reference_id,
                product_uid=i.product_uid,
                quantity=i.quantity,
                files=i.files,
                personalization=_personalization(i),
            )
            for i in state.items
        ],
        shipping_address=state.shipping_address,
        facility=FacilityPublic(
            id=state.facility.id, name=state.facility.name, timezone=state.facility.timezone
        ),
        cutoff_at=state.cutoff_at,
        editable_until=editable_until(state.status, state.cutoff_at),
        allowed_actions=AllowedActions(
            **allowed_actions(state.status, state.cutoff_at, now, state.hold)
        ),
        job_id=state.job_id,
        hold=state.hold,
        cancel_reason=state.cancel_reason,
        cancel_reason_code=state.cancel_reason_code,
        shipments=state.shipments,
        reorder_of=state.reorder_of,
        reorders=reorders or [],
        metadata=state.metadata,
        shipping_method=state.shipping_method,
        price=state.price,
        ships_by=state.ships_by,
        delivery_estimate=state.delivery_estimate,
        late=state.late,
        events=[TimelineEventPublic(at=e.at, type=e.type, detail=e.detail) for e in events],
        created_at=state.created_at,
        updated_at=state.updated_at,
    )


def _personalization(item: ItemState) -> ItemPersonalization | None:
    spec = item.personalization
    if spec is None:
        return None
    return ItemPersonalization(
        fields=[f.model_dump() for f in spec.fields],
        status=item.personalization_status,
        values=item.personalization_values,
        image_checks=item.image_checks,
    )
