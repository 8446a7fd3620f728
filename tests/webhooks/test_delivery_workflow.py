"""Webhook delivery: in order, signed, retried for a day, the same event id on every attempt.

Time-skipping server, real database, real HTTP receiver: an hour-long outage and a 25-hour
refusal take a few seconds of wall-clock time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from sqlmodel import col, func, select
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker._workflow_instance import _WorkflowLogicFlag

from activities.webhooks.delivery import WebhookActivities
from activities.webhooks.emitter import ON_HOLD, SHIPMENT_CREATED, STATUS_UPDATED, WebhookEmitter
from contracts.webhooks import WebhookDeliveryInput, delivery_workflow_id
from db.engine import session_factory
from db.models import WebhookDelivery, WebhookEvent
from domain.orders import EventType, Hold, OrderState, Status, TimelineEvent, new_state
from tests.helpers.keys import keys
from tests.helpers.webhook_delivery import SECRET, Delivery, add_merchant
from tests.helpers.workflows import order_input, result_of
from worker import WORKFLOW_RUNNER
from workflows.client import data_converter, enqueue_deliveries
from workflows.webhooks import IDLE_TIMEOUT, MAX_QUEUED, WebhookDeliveryWorkflow


def _order(merchant_id: str, now: datetime) -> OrderState:
    state = new_state(order_input(now))
    state.merchant_id = merchant_id
    state.status = Status.SHIPPED
    return state


def _lifecycle(now: datetime) -> list[TimelineEvent]:
    """printed, one package shipped, delivered: what the order workflow projects."""
    tracking = {"carrier": "DHL", "tracking_code": "PKG1", "tracking_url": "https://t.example/1"}
    return [
        TimelineEvent(seq=5, at=now, type="printed", status="printed", detail={}),
        TimelineEvent(seq=6, at=now, type="shipment", status="shipped", detail=tracking),
        TimelineEvent(seq=7, at=now, type="delivered", status="delivered", detail={}),
    ]


async def _decoded_payloads(history_json: str) -> str:
    """Every payload in a JSON history, decrypted with the suite's keys and decoded."""
    codec = data_converter(keys()).payload_codec
    assert codec is not None

    def payloads(node: object) -> list[Payload]:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and isinstance(node.get("metadata"), dict):
                meta = {k: base64.b64decode(v) for k, v in node["metadata"].items()}
                return [Payload(metadata=meta, data=base64.b64decode(node["data"]))]
            return [p for value in node.values() for p in payloads(value)]
        if isinstance(node, list):
            return [p for value in node for p in payloads(value)]
        return []

    decoded = await codec.decode(payloads(json.loads(history_json)))
    return "\n".join(p.data.decode(errors="replace") for p in decoded)


async def _deliveries(d: Delivery, event_id: str) -> list[WebhookDelivery]:
    async with session_factory(d.engine)() as session:
        rows = await session.exec(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id == event_id)
            .order_by(col(WebhookDelivery.id))
        )
        return list(rows)


async def _event(d: Delivery, event_id: str) -> WebhookEvent:
    async with session_factory(d.engine)() as session:
        event = await session.get(WebhookEvent, event_id)
        assert event is not None
        return event


async def _finish(d: Delivery, order_id: str) -> Any:
    """Waits (skipping time) until the order's delivery workflow has nothing left to do.

    The emitter started the workflow, so this handle is a plain one: time skipping must be
    unlocked explicitly (only handles from the env's own start_workflow do it themselves).
    """
    handle = d.env.client.get_workflow_handle(delivery_workflow_id(order_id))
    async with d.env.time_skipping_unlocked():  # type: ignore[attr-defined]
        return await result_of(handle)


async def test_a_receiver_down_for_an_hour_gets_every_event_in_order_with_one_id_each(
    delivery: Delivery,
) -> None:
    d = delivery
    start = await d.env.get_current_time()
    d.receiver.fail_until = start + timedelta(hours=1)
    state = _order(d.merchant_id, start)

    ids = await d.emitter.order_changed(state, _lifecycle(start))
    assert [i.rsplit("_", 2)[1:] for i in ids] == [
        ["5", "status"],
        ["6", "status"],
        ["6", "shipment"],
        ["7", "status"],
    ]
    assert await _finish(d, state.order_id) == 4

    # Every event arrived, once accepted, in the order it happened.
    assert d.receiver.accepted_ids() == ids
    assert all(r.verified for r in d.receiver.requests), "every request is signed correctly"
    types = [r.payload["type"] for r in d.receiver.accepted()]
    assert types == [STATUS_UPDATED, STATUS_UPDATED, SHIPMENT_CREATED, STATUS_UPDATED]
    statuses = [r.payload["data"].get("status") for r in d.receiver.accepted()]
    assert statuses == ["printed", "shipped", None, "delivered"]
    shipment = d.receiver.accepted()[2].payload["data"]["shipment"]
    assert shipment == {
        "carrier": "DHL",
        "tracking_code": "PKG1",
        "tracking_url": "https://t.example/1",
    }

    # The first event was retried through the outage, always with the same id and body.
    first = d.receiver.attempts_of(ids[0])
    assert len(first) >= 5
    assert {r.body for r in first} == {first[0].body}
    assert {r.payload["id"] for r in first} == {ids[0]}
    assert [r.answered for r in first] == [503] * (len(first) - 1) + [200]
    assert first[-1].at >= start + timedelta(hours=1)
    assert first[-1].at <= start + timedelta(hours=2), "recovery is noticed within the hour"
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(first, first[1:], strict=False)]
    assert gaps[0] >= 9, "back-off starts at 10 seconds"
    assert all(later >= earlier * 1.5 for earlier, later in zip(gaps, gaps[1:], strict=False)), (
        f"back-off grows exponentially: {gaps}"
    )
    # Nothing later was even tried before the first was accepted.
    first_accepted = d.receiver.requests.index(first[-1])
    assert all(r.event_id == ids[0] for r in d.receiver.requests[:first_accepted])

    # Each attempt is on record, numbered, with what the receiver answered.
    rows = await _deliveries(d, ids[0])
    assert [r.attempt for r in rows] == list(range(1, len(first) + 1))
    assert [r.status_code for r in rows] == [503] * (len(first) - 1) + [200]
    assert [r.succeeded for r in rows] == [False] * (len(first) - 1) + [True]
    assert all(r.url == d.receiver.url for r in rows)
    for event_id in ids:
        assert (await _event(d, event_id)).delivered_at is not None

    # Temporal's history carries event ids only: no secret, no order data.
    handle = d.env.client.get_workflow_handle(delivery_workflow_id(state.order_id))
    history = await _decoded_payloads((await handle.fetch_history()).to_json())
    assert ids[0] in history
    assert SECRET not in history
    assert state.shipping_address.first_name not in history and "tracking" not in history


async def test_an_event_refused_for_25_hours_is_given_up_and_the_next_one_goes(
    delivery: Delivery,
) -> None:
    d = delivery
    start = await d.env.get_current_time()
    state = _order(d.merchant_id, start)
    events = _lifecycle(start)
    ids = await d.emitter.order_changed(state, [events[0], events[2]])
    d.receiver.fail_events = {ids[0]}

    assert await _finish(d, state.order_id) == 2

    refused = d.receiver.attempts_of(ids[0])
    assert all(r.answered == 503 for r in refused)
    assert refused[-1].at - refused[0].at >= timedelta(hours=24), "retried for at least a day"
    assert d.receiver.accepted_ids() == [ids[1]], "the next event went once the first gave up"
    assert d.receiver.accepted()[0].at >= start + timedelta(hours=24)

    rows = await _deliveries(d, ids[0])
    given_up = [r for r in rows if r.attempt == 0]
    assert len(given_up) == 1 and given_up[0].error is not None
    assert given_up[0].error.startswith(f"gave up after {len(refused)} attempts")
    assert (await _event(d, ids[0])).delivered_at is None
    assert (await _event(d, ids[1])).delivered_at is not None


async def test_a_repeated_projection_sends_once_and_a_redelivery_sends_again(
    delivery: Delivery,
) -> None:
    d = delivery
    start = await d.env.get_current_time()
    state = _order(d.merchant_id, start)
    events = _lifecycle(start)[:1]

    ids = await d.emitter.order_changed(state, events)
    assert await d.emitter.order_changed(state, events) == ids  # a retried projection
    await _finish(d, state.order_id)
    assert await d.emitter.order_changed(state, events) == ids  # …even much later
    await _finish(d, state.order_id)
    assert d.receiver.accepted_ids() == ids
    async with session_factory(d.engine)() as session:
        stored = await session.exec(select(func.count()).select_from(WebhookEvent))
        assert stored.one() == 1

    await enqueue_deliveries(d.env.client, d.task_queue, state.order_id, ids, redeliver=True)
    await _finish(d, state.order_id)
    again = d.receiver.accepted()
    assert [r.event_id for r in again] == ids * 2
    assert again[0].body == again[1].body, "a redelivery is the same event"
    assert again[0].timestamp is not None and again[1].timestamp is not None
    assert [r.attempt for r in await _deliveries(d, ids[0])] == [1, 2]


async def test_holds_and_status_changes_become_events_only_for_merchants_with_a_url(
    delivery: Delivery,
) -> None:
    d = delivery
    now = await d.env.get_current_time()
    state = _order(d.merchant_id, now)
    state.status = Status.ON_HOLD
    state.hold = Hold(kind="file_quality", description="blurry photo", since=now)
    hold = TimelineEvent(
        seq=4,
        at=now,
        type="on_hold",
        status="on_hold",
        detail={"kind": "file_quality", "description": "blurry photo"},
    )
    reminder = TimelineEvent(seq=5, at=now, type="hold_reminder_sent", detail={"reminder": 1})

    ids = await d.emitter.order_changed(state, [hold, reminder])
    assert ids == [f"evt_{state.order_id}_4_status", f"evt_{state.order_id}_4_hold"]
    await _finish(d, state.order_id)
    status, held = (r.payload for r in d.receiver.accepted())
    assert status["type"] == STATUS_UPDATED and held["type"] == ON_HOLD
    assert held["data"]["hold"] == {"kind": "file_quality", "description": "blurry photo"}
    order = held["data"]["order"]
    assert order["id"] == state.order_id and order["status"] == "on_hold"
    assert "events" not in order
    assert datetime.fromisoformat(held["created_at"]) == now

    silent = await add_merchant(d.engine, webhook_url=None)
    quiet = _order(silent, now)
    assert await d.emitter.order_changed(quiet, [hold]) == []
    with pytest.raises(RPCError) as no_workflow:
        await d.env.client.get_workflow_handle(delivery_workflow_id(quiet.order_id)).describe()
    assert no_workflow.value.status == RPCStatusCode.NOT_FOUND


async def test_a_long_queue_continues_as_new_and_keeps_its_order(delivery: Delivery) -> None:
    d = delivery
    now = await d.env.get_current_time()
    state = _order(d.merchant_id, now)
    workflow_id = delivery_workflow_id(state.order_id)
    first_run = await d.env.client.start_workflow(
        WebhookDeliveryWorkflow.run,
        WebhookDeliveryInput(order_id=state.order_id, deliveries_per_run=2),
        id=workflow_id,
        task_queue=d.task_queue,
    )
    changes = [
        TimelineEvent(seq=seq, at=now, type=EventType.EVENT_IGNORED, status=status)
        for seq, status in enumerate(["printed", "shipped", "delivered", "returned", "x"], 1)
    ]
    ids = await d.emitter.order_changed(state, changes)

    assert await _finish(d, state.order_id) == 1, "the last run delivered the last event"
    assert d.receiver.accepted_ids() == ids, "every event, in order, across three runs"
    described = await d.env.client.get_workflow_handle(
        workflow_id, run_id=first_run.result_run_id
    ).describe()
    assert described.status == WorkflowExecutionStatus.CONTINUED_AS_NEW


async def test_redelivering_a_queued_event_adds_nothing_and_the_queue_is_bounded(
    delivery: Delivery,
) -> None:
    """A merchant clicking "redeliver" again and again, while the receiver is down and the
    event still waits its turn, queues it once; thousands of events queue no more than
    MAX_QUEUED (the queue travels through continue-as-new)."""
    d = delivery
    start = await d.env.get_current_time()
    d.receiver.fail_until = start + timedelta(days=30)
    state = _order(d.merchant_id, start)
    ids = await d.emitter.order_changed(state, _lifecycle(start)[:2])
    assert len(ids) == 3
    for _ in range(30):
        await enqueue_deliveries(d.env.client, d.task_queue, state.order_id, ids, redeliver=True)
    handle = d.env.client.get_workflow_handle(delivery_workflow_id(state.order_id))
    assert await handle.query(WebhookDeliveryWorkflow.pending) == ids

    many = [f"evt_{state.order_id}_{n}_status" for n in range(MAX_QUEUED + 200)]
    for at in range(0, len(many), 500):
        await enqueue_deliveries(
            d.env.client, d.task_queue, state.order_id, many[at : at + 500], redeliver=True
        )
    pending = await handle.query(WebhookDeliveryWorkflow.pending)
    assert len(pending) == MAX_QUEUED
    assert pending[:3] == ids, "what was queued first keeps its place"
    assert len(set(pending)) == len(pending)


async def test_an_event_queued_as_the_idle_timer_fires_is_still_delivered(
    delivery: Delivery,
) -> None:
    """The idle timer fires and an event is signaled in the same workflow task: the workflow
    re-checks its queue after the timeout instead of ending with the event in it."""
    d = delivery
    now = await d.env.get_current_time()
    state = _order(d.merchant_id, now)
    first, second = _lifecycle(now)[:2]
    task_queue = "hooks-idle-" + uuid.uuid4().hex
    emitter = WebhookEmitter(d.engine, partial(enqueue_deliveries, d.env.client, task_queue))
    handle = d.env.client.get_workflow_handle(delivery_workflow_id(state.order_id))

    async with httpx.AsyncClient() as http:
        activities = WebhookActivities(d.engine, http, allow_private=True)

        def worker() -> Worker:
            running = Worker(
                d.env.client,
                task_queue=task_queue,
                workflows=[WebhookDeliveryWorkflow],
                workflow_runner=WORKFLOW_RUNNER,
                activities=[activities.deliver_webhook, activities.webhook_given_up],
                # No sticky queue: the next worker takes the workflow's next task at once.
                max_cached_workflows=0,
            )
            # The SDK's single-batch activations (off by default in this release, to be on in
            # a later one): every job of a task is applied before the workflow runs, so the
            # timer's timeout can win over the signal that came with it.
            running._set_default_workflow_logic_flag(
                _WorkflowLogicFlag.PROCESS_WORKFLOW_ACTIVATION_JOBS_AS_SINGLE_BATCH, enabled=True
            )
            return running

        async with worker():
            ids = await emitter.order_changed(state, [first])
            for _ in range(200):
                if d.receiver.accepted_ids() == ids and not await handle.query(
                    WebhookDeliveryWorkflow.pending
                ):
                    break
                await asyncio.sleep(0.05)
            assert d.receiver.accepted_ids() == ids
            await asyncio.sleep(0.5)  # the workflow task that starts the idle timer completes
        # No worker: the idle timer fires, then the next event is signaled, and both reach
        # the next worker in one workflow task.
        await d.env.sleep(IDLE_TIMEOUT + timedelta(seconds=5))
        later = await emitter.order_changed(state, [second])
        assert len(later) == 2
        async with worker():
            async with d.env.time_skipping_unlocked():  # type: ignore[attr-defined]
                await handle.result()
    assert d.receiver.accepted_ids() == ids + later, "the event queued at the timeout went out"
