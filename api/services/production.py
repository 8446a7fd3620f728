"""Facilities report back: ``POST /v1/production/events`` with the facility's bearer token.

An event is recorded once per facility and ``event_id`` (the ``production_events`` primary key:
each facility numbers its own events) and then signaled to the order's workflow, which alone
decides what it means for the order. The insert and the signal share one transaction: if the
signal fails, the insert is rolled back and the facility gets a 503, so its retry is not
mistaken for a duplicate and the event is not lost.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Conflict, NotFound, Unavailable
from api.schemas import EventAccepted
from contracts.orders import ProductionSignal
from db.engine import utcnow
from db.models import Order, OrderEvent, ProductionEvent
from domain.facilities import Facility
from domain.orders import EventType, ProductionEventIn
from workflows.orders import OrderWorkflow

log = logging.getLogger("printflow.api.production")

MAX_EVENTS_PER_ORDER = 50


async def record_event(
    session: AsyncSession, temporal: Client, facility: Facility, body: ProductionEventIn
) -> EventAccepted:
    """Records the event once and signals it to the order's workflow (see the module doc)."""
    # The two columns it needs, not the order's state and workflow input decoded.
    query = select(Order.facility_id, Order.status).where(Order.id == body.order_id)
    facility_id, order_status = (await session.exec(query)).first() or (None, "")
    if facility_id != facility.id:
        raise NotFound(
            f"no order {body.order_id} at facility {facility.id}", code="order_not_found"
        )
    received_at = utcnow()
    session.add(_row(facility, body, received_at))
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        return await _duplicate(session, facility, body)
    reported = (
        await session.exec(select(func.count()).where(ProductionEvent.order_id == body.order_id))
    ).one()
    if reported > MAX_EVENTS_PER_ORDER:
        # A real order has a handful; beyond this a facility is looping, and every report
        # would grow the order's history.
        await session.rollback()
        raise Conflict(
            f"order {body.order_id} has had {MAX_EVENTS_PER_ORDER} events already; "
            "no more are accepted",
            code="too_many_events",
        )

    try:
        await temporal.get_workflow_handle(body.order_id).signal(
            OrderWorkflow.facility_event, ProductionSignal(event=body, received_at=received_at)
        )
    except RPCError as err:
        await session.rollback()
        if err.status != RPCStatusCode.NOT_FOUND:
            log.warning("event %s not signaled: %s", body.event_id, err.message)
            raise Unavailable(
                "the event could not be passed to the order; retry with the same event_id"
            ) from None
        # The order's workflow has closed: keep the report in its timeline, change nothing.
        return await _record_for_closed_order(session, facility, body, received_at, order_status)
    await session.commit()
    return EventAccepted(duplicate=False)


def _row(facility: Facility, body: ProductionEventIn, received_at: datetime) -> ProductionEvent:
    return ProductionEvent(
        event_id=body.event_id,
        order_id=body.order_id,
        facility_id=facility.id,
        type=body.type,
        payload=body.model_dump(mode="json"),
        received_at=received_at,
    )


def _key(facility: Facility, body: ProductionEventIn) -> dict[str, str]:
    return {"facility_id": facility.id, "event_id": body.event_id}


async def _duplicate(
    session: AsyncSession, facility: Facility, body: ProductionEventIn
) -> EventAccepted:
    seen = await session.get(ProductionEvent, _key(facility, body))
    if seen is not None and seen.order_id != body.order_id:
        # Not a retry: dropping it as a duplicate would lose a real event.
        raise Conflict(
            f"event_id {body.event_id} was already used for another order",
            code="event_id_conflict",
        )
    return EventAccepted(duplicate=True)


async def _record_for_closed_order(
    session: AsyncSession,
    facility: Facility,
    body: ProductionEventIn,
    at: datetime,
    status: str,
) -> EventAccepted:
    """The event and an ``event_ignored`` timeline entry, in one transaction.

    No workflow writes this timeline any more; only concurrent reports race for the next seq,
    and the loser of a race simply tries the following one.
    """
    detail: dict[str, Any] = {
        "event": body.type,
        "event_id": body.event_id,
        "why": f"the order is closed ({status})",
    }
    for _ in range(5):
        last = (
            await session.exec(
                select(func.max(OrderEvent.seq)).where(OrderEvent.order_id == body.order_id)
            )
        ).one()
        session.add(_row(facility, body, at))
        session.add(
            OrderEvent(
                order_id=body.order_id,
                seq=(last or 0) + 1,
                at=at,
                type=EventType.EVENT_IGNORED,
                detail=detail,
            )
        )
        try:
            await session.commit()
            return EventAccepted(duplicate=False)
        except IntegrityError:
            await session.rollback()
        if await session.get(ProductionEvent, _key(facility, body)) is not None:
            return await _duplicate(session, facility, body)
    raise Unavailable("the event could not be recorded; retry with the same event_id")
