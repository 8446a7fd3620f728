"""Facilities report back: ``POST /v1/production/events`` with the facility's bearer token.

An event is recorded once per facility and ``event_id`` (the ``production_events`` primary key:
each facility numbers its own events), then signaled to the order's workflow, which alone
decides what it means for the order, and then marked passed (``passed_at``).

The insert commits before the signal: the database is not held while Temporal answers (on
SQLite, a write transaction holds the whole file, and every order created meanwhile would wait
for it). If the signal fails, or the API stops before it, the row stays unpassed and the facility
gets a 503 or no answer; its retry with the same ``event_id`` finds the row and signals it again.
Should the facility give up, the sweep (``pass_recorded_forever``, in every API process) passes
rows left unpassed for ``SWEEP_EVERY``. The workflow ignores an ``event_id`` it has seen, so a
signal repeated after a lost answer, or by two processes at once, changes nothing; a repeat of a
passed event signals nothing, so a looping facility cannot grow the order's history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Update, update
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
# How often each API process sweeps, and how long a row waits unpassed before a sweep takes it
# (a request that is still signaling it is not raced).
SWEEP_EVERY = timedelta(minutes=1)


async def record_event(
    session: AsyncSession, temporal: Client, facility: Facility, body: ProductionEventIn
) -> EventAccepted:
    """Records the event once and passes it to the order's workflow (see the module doc)."""
    # The two columns it needs, not the order's state and workflow input decoded.
    query = select(Order.facility_id, Order.status).where(Order.id == body.order_id)
    facility_id, order_status = (await session.exec(query)).first() or (None, "")
    if facility_id != facility.id:
        raise NotFound(
            f"no order {body.order_id} at facility {facility.id}", code="order_not_found"
        )
    recorded, duplicate = await _insert(session, facility, body)
    if recorded.passed_at is not None:
        return EventAccepted(duplicate=True)
    # What was recorded is what the order gets: a retry's body does not replace it.
    event = ProductionEventIn.model_validate(recorded.payload) if duplicate else body
    try:
        await _pass(session, temporal, recorded, event, order_status)
    except RPCError as err:
        log.warning("event %s not signaled: %s", body.event_id, err.message)
        raise Unavailable(
            "the event is recorded but could not be passed to the order; "
            "retry with the same event_id"
        ) from None
    return EventAccepted(duplicate=duplicate)


async def pass_recorded(
    sessions: Callable[[], AsyncSession],
    temporal: Client,
    older_than: timedelta = SWEEP_EVERY,
    limit: int = 100,
) -> int:
    """Passes the reports recorded at least ``older_than`` ago and never passed, oldest first;
    how many. Temporal not answering stops the sweep (it raises), for the next one; a report
    Temporal or its model rejects for itself is logged as an error and left for the next sweep,
    and the ones after it are passed."""
    query = (
        select(ProductionEvent, Order.status)
        .join(Order, Order.id == ProductionEvent.order_id)  # type: ignore[arg-type]
        .where(
            ProductionEvent.passed_at.is_(None),  # type: ignore[union-attr]
            ProductionEvent.received_at <= utcnow() - older_than,  # type: ignore[operator]
        )
        .order_by(ProductionEvent.received_at)  # type: ignore[arg-type]
        .limit(limit)
    )
    async with sessions() as session:
        rows = (await session.exec(query)).all()
    passed = 0
    for row, status in rows:
        try:
            event = ProductionEventIn.model_validate(row.payload)
            async with sessions() as session:
                await _pass(session, temporal, row, event, status)
        except RPCError as err:
            if err.status in _UNREACHABLE:
                raise
            _not_passed(row, f"Temporal rejected its signal: {err.message}")
            continue
        except ValidationError as err:
            _not_passed(row, f"it no longer validates ({err.error_count()} errors)")
            continue
        passed += 1
    return passed


# Temporal not answering (or shedding load): every report would fail alike until it does.
_UNREACHABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
    }
)


def _not_passed(row: ProductionEvent, why: str) -> None:
    log.error(
        "facility report %s of facility %s for order %s not passed, %s; the next sweep tries again",
        row.event_id,
        row.facility_id,
        row.order_id,
        why,
    )


async def pass_recorded_forever(sessions: Callable[[], AsyncSession], temporal: Client) -> None:
    """``pass_recorded`` every ``SWEEP_EVERY`` until cancelled; a failure waits for the next."""
    while True:
        try:
            passed = await pass_recorded(sessions, temporal)
            if passed:
                log.warning("passed %d facility reports whose signal had not gone through", passed)
        except Exception as err:  # noqa: BLE001 - Temporal or the database down: next time
            log.warning("passing recorded facility reports failed: %s", type(err).__name__)
        await asyncio.sleep(SWEEP_EVERY.total_seconds())


async def _pass(
    session: AsyncSession,
    temporal: Client,
    recorded: ProductionEvent,
    event: ProductionEventIn,
    order_status: str,
) -> None:
    """Signals the recorded event to its order's workflow and marks it passed; for an order
    whose workflow has closed, marks it passed with an ``event_ignored`` timeline entry
    instead. Raises the ``RPCError`` of a signal Temporal did not take."""
    try:
        await temporal.get_workflow_handle(event.order_id).signal(
            OrderWorkflow.facility_event,
            ProductionSignal(event=event, received_at=recorded.received_at),
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        # The order's workflow has closed: keep the report in its timeline, change nothing.
        await _record_for_closed_order(session, recorded, event, order_status)
        return
    await session.exec(_passed(recorded.facility_id, event.event_id))
    await session.commit()


async def _insert(
    session: AsyncSession, facility: Facility, body: ProductionEventIn
) -> tuple[ProductionEvent, bool]:
    """The event's row, committed, and whether it was there before (this facility reported the
    same ``event_id`` for this order earlier; for another order it is a 409: not a retry, and
    dropping it as a duplicate would lose a real event)."""
    row = ProductionEvent(
        event_id=body.event_id,
        order_id=body.order_id,
        facility_id=facility.id,
        type=body.type,
        payload=body.model_dump(mode="json"),
        received_at=utcnow(),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        key = {"facility_id": facility.id, "event_id": body.event_id}
        seen = await session.get(ProductionEvent, key)
        if seen is None:  # the insert it lost to was rolled back after all
            raise Unavailable(
                "the event could not be recorded; retry with the same event_id"
            ) from None
        if seen.order_id != body.order_id:
            raise Conflict(
                f"event_id {body.event_id} was already used for another order",
                code="event_id_conflict",
            ) from None
        return seen, True
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
    await session.commit()
    return row, False


def _passed(facility_id: str, event_id: str) -> Update:
    """Sets ``passed_at`` unless another request did (the statement's rowcount says which)."""
    return (
        update(ProductionEvent)
        .where(
            ProductionEvent.facility_id == facility_id,  # type: ignore[arg-type]
            ProductionEvent.event_id == event_id,  # type: ignore[arg-type]
            ProductionEvent.passed_at.is_(None),  # type: ignore[union-attr]
        )
        .values(passed_at=utcnow())
    )


async def _record_for_closed_order(
    session: AsyncSession, recorded: ProductionEvent, event: ProductionEventIn, status: str
) -> None:
    """Marks the event passed and adds an ``event_ignored`` timeline entry, in one transaction.

    No workflow writes this timeline any more; only concurrent reports race for the next seq,
    and the loser of a race simply tries the following one. A retry of the same event that
    marked it first has added the entry already.
    """
    detail: dict[str, Any] = {
        "event": event.type,
        "event_id": event.event_id,
        "why": f"the order is closed ({status})",
    }
    for _ in range(5):
        if not (await session.exec(_passed(recorded.facility_id, event.event_id))).rowcount:
            await session.rollback()
            return
        last = (
            await session.exec(
                select(func.max(OrderEvent.seq)).where(OrderEvent.order_id == event.order_id)
            )
        ).one()
        session.add(
            OrderEvent(
                order_id=event.order_id,
                seq=(last or 0) + 1,
                at=recorded.received_at,
                type=EventType.EVENT_IGNORED,
                detail=detail,
            )
        )
        try:
            await session.commit()
            return
        except IntegrityError:
            await session.rollback()
    raise Unavailable("the event is recorded but could not be passed; retry with the same event_id")
