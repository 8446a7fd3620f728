"""Merchants' order endpoints (``X-API-Key``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import (
    FacilitiesDep,
    IdempotencyKeyDep,
    MerchantDep,
    SessionDep,
    SettingsDep,
    StarterDep,
    TemporalDep,
)
from api.schemas import OrderPage, OrderPublic
from api.services import orders, quotes
from contracts.orders import AddressChange
from db.engine import utcnow
from domain.orders import (
    Action,
    CancelRequest,
    HoldResolution,
    OrderCreate,
    OrderState,
    ShippingAddress,
    Status,
)
from workflows.orders import OrderWorkflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])

_WRITE: dict[int | str, dict[str, Any]] = {
    409: {"description": "the order's state does not allow this; nothing changed"},
    503: {
        "description": "order_busy: the order did not answer within UPDATE_TIMEOUT; the change "
        "may still happen (GET tells). Retry with the same Idempotency-Key to apply it once."
    },
}


@router.post(
    "",
    status_code=201,
    response_model=OrderPublic,
    responses={
        200: {"description": "the same order_reference_id and body again: the existing order"},
        409: {"description": "order_reference_id already used with a different body"},
    },
)
async def create_order(
    body: OrderCreate,
    response: Response,
    merchant: MerchantDep,
    session: SessionDep,
    starter: StarterDep,
    settings: SettingsDep,
    facilities: FacilitiesDep,
) -> OrderPublic:
    """Answers as soon as the order is stored; its workflow starts right after (see README)."""
    order, created = await orders.create_order(
        session, starter, settings, facilities, merchant, body
    )
    if not created:
        response.status_code = 200
    return order


@router.get("", response_model=OrderPage)
async def list_orders(
    merchant: MerchantDep,
    session: SessionDep,
    status: Status | None = None,
    order_reference_id: str | None = None,
    support_id: Annotated[
        str | None,
        Query(
            description="the order with this Support ID (PF-XXXXXXXX; any case, spaces "
            "around it ignored): at most one order"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> OrderPage:
    data, next_cursor = await orders.list_orders(
        session,
        merchant,
        status=status,
        order_reference_id=order_reference_id,
        support_id=support_id,
        limit=limit,
        cursor=cursor,
    )
    return OrderPage(data=data, next_cursor=next_cursor)


@router.get("/{order_id}", response_model=OrderPublic)
async def get_order(order_id: str, merchant: MerchantDep, session: SessionDep) -> OrderPublic:
    return await orders.get_order(session, merchant, order_id)


@router.post("/{order_id}/cancel", response_model=OrderPublic, responses=_WRITE)
async def cancel_order(
    order_id: str,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
    body: CancelRequest | None = None,
) -> OrderPublic:
    row = await orders.get_row(session, merchant, order_id)
    return await orders.update_order(
        session,
        temporal,
        settings,
        row,
        Action.CANCEL,
        OrderWorkflow.cancel,
        body or CancelRequest(),
        idempotency_key=idempotency_key,
    )


@router.put("/{order_id}/shipping-address", response_model=OrderPublic, responses=_WRITE)
async def update_shipping_address(
    order_id: str,
    body: ShippingAddress,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    facilities: FacilitiesDep,
    idempotency_key: IdempotencyKeyDep,
) -> OrderPublic:
    row = await orders.get_row(session, merchant, order_id)
    facility, promise = quotes.readdressed(
        settings, facilities, OrderState.model_validate(row.state), body.country, utcnow()
    )
    return await orders.update_order(
        session,
        temporal,
        settings,
        row,
        Action.UPDATE_ADDRESS,
        OrderWorkflow.update_shipping_address,
        AddressChange(shipping_address=body, facility=facility.info(), promise=promise),
        idempotency_key=idempotency_key,
    )


@router.post("/{order_id}/approve", response_model=OrderPublic, responses=_WRITE)
async def approve_order(
    order_id: str,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> OrderPublic:
    row = await orders.get_row(session, merchant, order_id)
    return await orders.update_order(
        session,
        temporal,
        settings,
        row,
        Action.APPROVE,
        OrderWorkflow.approve,
        idempotency_key=idempotency_key,
    )


@router.post("/{order_id}/resolve-hold", response_model=OrderPublic, responses=_WRITE)
async def resolve_hold(
    order_id: str,
    body: HoldResolution,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> OrderPublic:
    """Answers a hold: ``proceed`` as it is, or ``replace_files`` and release.

    To fix an address, use the shipping-address endpoint; to give up, cancel.
    """
    row = await orders.get_row(session, merchant, order_id)
    return await orders.update_order(
        session,
        temporal,
        settings,
        row,
        None,
        OrderWorkflow.resolve_hold,
        body,
        idempotency_key=idempotency_key,
    )
