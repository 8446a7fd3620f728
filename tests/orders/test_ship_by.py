"""The ship-by promise, watched by a durable timer: an order not shipped by ``ships_by`` becomes
late (a timeline entry, the new estimate, an e-mail, ``Late``); one shipped in time records the
promise kept; while the order waits for its merchant the promise waits too, and their answer
moves it (time-skipping server)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.orders import AddressChange, ProductionSignal
from domain.orders import (
    CancelRequest,
    EventType,
    OrderInput,
    OrderTerms,
    ProductionEventIn,
    ShipPromise,
    Status,
)
from domain.quotes import delivery_window, promise_dates
from domain.schedule import next_cutoff
from tests.helpers.polling import eventually
from tests.helpers.workflows import (
    OSLO,
    Recorder,
    clear_of_a_cutoff,
    order_body,
    order_input,
    order_worker,
    replays,
    sleep_until,
    start,
    state_of,
    until,
)
from workflows import search_attributes as sa
from workflows.orders import OrderWorkflow

PROMISE = ShipPromise(production_days=2, transit_min_days=1, transit_max_days=3)


def promised(inp: OrderInput, promise: ShipPromise = PROMISE) -> OrderInput:
    """``inp`` with the terms the API gives it: shipped by its first cutoff plus 2 business
    days."""
    cutoff = next_cutoff(OSLO.schedule, OSLO.timezone, inp.received_at)
    ships_by, window = promise_dates(OSLO.timezone, promise, cutoff)
    terms = OrderTerms(
        shipping_method="standard",
        ships_by=ships_by,
        delivery_estimate=window,
        promise=promise,
        watch_ships_by=True,
    )
    return inp.model_copy(update={"terms": terms})


async def _ship(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], code: str) -> None:
    event = ProductionEventIn.model_validate(
        {
            "event_id": uuid.uuid4().hex,
            "order_id": handle.id,
            "type": "shipped",
            "tracking": {"carrier": "DHL", "tracking_code": code},
        }
    )
    await handle.signal(
        OrderWorkflow.facility_event,
        ProductionSignal(event=event, received_at=await env.get_current_time()),
    )


def _late_events(rec: Recorder) -> list[dict[str, Any]]:
    return [
        e.detail
        for p in rec.projections
        for e in p.new_events
        if e.type is EventType.LATE and isinstance(e.detail, dict)
    ]


async def test_an_order_not_shipped_by_its_promise_is_late(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, promised(order_input(await clear_of_a_cutoff(env))))
        ships_by = (await state_of(handle)).ships_by
        assert ships_by is not None

        await sleep_until(env, ships_by - timedelta(seconds=1))
        assert (await state_of(handle)).status is Status.IN_PRODUCTION
        assert not (await state_of(handle)).late and rec.delays == []

        await env.sleep(timedelta(seconds=2))
        state = await until(handle, lambda s: s.late)
        assert state.ships_by == ships_by
        [detail] = await eventually("the late event's projection", lambda: _late_events(rec))
        estimated = datetime.fromisoformat(detail["estimated_ships_by"])
        assert detail["ships_by"] == ships_by.isoformat()
        # The new estimate: by the end of the next business day, and the window from there.
        assert ships_by < estimated <= ships_by + timedelta(days=4)
        assert state.delivery_estimate == delivery_window(OSLO.timezone, PROMISE, estimated)
        assert detail["delivery_estimate"] == state.delivery_estimate.model_dump(mode="json")
        assert rec.projections[-1].given().late
        [notice] = await eventually("the merchant's notice of the delay", lambda: rec.delays)
        assert notice.ships_by == ships_by and notice.estimated_ships_by == estimated
        assert notice.support_email == "support@shop.test"
        described = await handle.describe()
        assert described.typed_search_attributes.get(sa.LATE) is True

        # It ships after all: the package records the promise broken; no second alarm.
        await _ship(env, handle, "LATE-1")
        shipped = await state_of(handle)
        assert shipped.status is Status.SHIPPED
        assert shipped.shipments[0].promise_kept is False
        await env.sleep(timedelta(days=5))
        assert len(_late_events(rec)) == 1 and len(rec.delays) == 1
        await replays(handle)


async def test_an_order_shipped_in_time_keeps_its_promise(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, promised(order_input(await clear_of_a_cutoff(env))))
        ships_by = (await state_of(handle)).ships_by
        assert ships_by is not None
        await sleep_until(env, ships_by - timedelta(seconds=1))
        await _ship(env, handle, "ON-TIME-1")
        await env.sleep(timedelta(days=3))

        state = await state_of(handle)
        assert state.shipments[0].promise_kept is True
        assert not state.late and rec.delays == [] and _late_events(rec) == []
        projected = await eventually(
            "the shipment's projection", lambda: rec.details(EventType.SHIPMENT)
        )
        shipment = next(d for d in projected if isinstance(d, dict))
        assert shipment["promise_kept"] is True
        described = await handle.describe()
        assert described.typed_search_attributes.get(sa.LATE) is None


async def test_a_promise_waits_for_the_merchant_and_moves_with_the_approval(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        now = await clear_of_a_cutoff(env)
        handle = await start(env.client, tq, promised(order_input(now, approval="manual")))
        first = (await state_of(handle)).ships_by
        assert first is not None

        # Past the first promise the order still waits for the merchant: not late.
        await sleep_until(env, first + timedelta(days=1))
        waiting = await state_of(handle)
        assert waiting.status is Status.PENDING_APPROVAL and not waiting.late
        assert rec.delays == []

        approved = await handle.execute_update(OrderWorkflow.approve)
        assert approved.cutoff_at is not None
        ships_by, window = promise_dates(OSLO.timezone, PROMISE, approved.cutoff_at)
        assert approved.ships_by == ships_by > first
        assert approved.delivery_estimate == window
        # The answer carries the projection the API writes; the workflow's own write follows.
        [approval] = [e.detail for e in approved.new_events or [] if e.type is EventType.APPROVED]
        assert isinstance(approval, dict) and approval["ships_by"] == ships_by.isoformat()
        [projected] = await eventually(
            "the approval's projection", lambda: rec.details(EventType.APPROVED)
        )
        assert projected == approval

        # The new promise is watched: just before it, in time; after it, late.
        await sleep_until(env, ships_by - timedelta(seconds=1))
        assert not (await state_of(handle)).late
        await env.sleep(timedelta(seconds=2))
        await until(handle, lambda s: s.late)
        await eventually("the merchant's notice of the delay", lambda: rec.delays)
        assert len(rec.delays) == 1
        await replays(handle)


async def test_a_canceled_order_is_never_late(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, promised(order_input(await clear_of_a_cutoff(env))))
        await handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason="not needed"))
        result = await handle.result()
        assert result.status is Status.CANCELED and not result.late
        assert rec.delays == [] and _late_events(rec) == []


async def test_a_new_address_moves_the_delivery_window(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, promised(order_input(await clear_of_a_cutoff(env))))
        before = await state_of(handle)
        assert before.ships_by is not None and before.cutoff_at is not None
        farther = PROMISE.model_copy(
            update={
                "transit_min_days": 4,
                "transit_max_days": 8,
                "closed_dates": [date(2099, 1, 1)],
            }
        )
        address = order_body().shipping_address.model_copy(update={"country": "SE"})
        changed = await handle.execute_update(
            OrderWorkflow.update_shipping_address,
            AddressChange(shipping_address=address, facility=OSLO, promise=farther),
        )
        # Same facility, same cutoff: it ships by the same moment and arrives later.
        assert changed.ships_by == before.ships_by
        assert changed.promise == farther
        assert changed.delivery_estimate == delivery_window(OSLO.timezone, farther, before.ships_by)
        assert before.delivery_estimate is not None and changed.delivery_estimate is not None
        assert changed.delivery_estimate.latest > before.delivery_estimate.latest
