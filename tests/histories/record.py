"""Records the committed replay histories: ``.venv/bin/python -m tests.histories.record``.

With no argument it records every history below; name one (``order_full_lifecycle``,
``webhook_delivery_gave_up``, ``support_case_breached_paused_resolved``,
``customer_contact_missed_late_reply_closed``, ``order_encrypted_with_test_key``,
``order_hold_canceled_in_its_task``, ``order_hold_readdressed_in_its_task``) to record only
that one. Re-record only on purpose (a deliberate, versioned change to a workflow):
``test_replay.py`` exists to catch accidental non-determinism against these files.

``order_created_before_api_wrote_creation.json`` has no recorder: earlier code wrote it (the
order workflow before the API wrote each order's first projection) and today's code must keep
replaying it as it is. ``order_canceled_before_reason_codes.json`` has none either: an order
canceled by the merchant with a reason, recorded by the code before cancel reason codes (its
cancel Update carries no ``reason_code``). ``order_priced_before_the_promise_was_watched.json``
has none either: a priced order (catalog terms, ``ships_by``) with manual approval, approved a
day after its ``ships_by``, then printed, shipped and delivered, recorded by the code before the
ship-by watch (whose terms have no ``watch_ships_by``, so today's code keeps no timer for it).
``order_full_lifecycle_before_answers_carried_projections.json`` is ``order_full_lifecycle`` as
the code recorded it before an order's Updates answered with their projection (each Update then
waited for its projection's activity and a second workflow task).
``order_full_lifecycle_before_patched_at_start.json`` is ``order_full_lifecycle`` as the code
recorded it before new orders started with the workflow's patches (``OrderInput.patched_at_start``):
its run records a marker for each patch it takes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from contracts.cases import AgentReply, MerchantMessage, Resolution
from contracts.contacts import CustomerReply, MerchantReply
from contracts.orders import PersonalizationSubmission
from contracts.webhooks import delivery_workflow_id
from db.engine import create_engine, create_tables
from domain.orders import (
    HoldResolution,
    Status,
    TimelineEvent,
    new_state,
)
from domain.support import Plan
from tests.conftest import TEMPORAL_TEST_SERVER
from tests.helpers.cases import amsterdam, case_world
from tests.helpers.contacts import berlin, contact_world
from tests.helpers.keys import TEST_KEY_A, keys
from tests.helpers.webhook_delivery import running_delivery
from tests.helpers.workflows import (
    Recorder,
    facility_report,
    hold_answered_in_its_task,
    order_body,
    order_input,
    order_worker,
    sleep_until,
)
from workflows.cases import SupportCaseWorkflow
from workflows.client import data_converter, ensure_search_attributes
from workflows.contacts import CustomerContactWorkflow
from workflows.orders import OrderWorkflow

HERE = Path(__file__).parent
ITEMS = [
    {
        "item_reference_id": "mug-1",
        "product_uid": "mug_11oz_white",
        "quantity": 1,
        "files": [{"type": "default", "url": "https://files.example/mug.png"}],
        "personalization": {
            "fields": [{"name": "name", "label": "Name", "type": "text", "required": True}]
        },
    }
]


@asynccontextmanager
async def _time_skipping(
    converter: DataConverter = pydantic_data_converter,
) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER, data_converter=converter
    )
    try:
        yield env
    finally:
        await env.shutdown()


def _write(name: str, history: WorkflowHistory) -> None:
    (HERE / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")


async def order_full_lifecycle() -> None:
    """An order through two links, personalization, a hold, printing, shipping and delivery."""
    async with _time_skipping() as env:
        await ensure_search_attributes(env.client, "default")
        async with order_worker(env.client, Recorder()) as tq:
            inp = order_input(await env.get_current_time(), body=order_body(items=ITEMS))
            handle = await env.client.start_workflow(
                OrderWorkflow.run, inp, id=inp.order_id, task_queue=tq
            )
            await sleep_until(env, inp.received_at + timedelta(days=8))  # two links
            state = await handle.query(OrderWorkflow.order)
            await handle.execute_update(
                OrderWorkflow.complete_personalization,
                PersonalizationSubmission(
                    link_id=state.link_id or "", values={"mug-1": {"name": "Ada"}}
                ),
            )
            state = await handle.query(OrderWorkflow.order)
            assert state.cutoff_at is not None
            await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
            await facility_report(
                env, handle, "issue", issue={"kind": "file_quality", "description": "blurry"}
            )
            await env.sleep(timedelta(days=1, minutes=1))
            await handle.execute_update(
                OrderWorkflow.resolve_hold, HoldResolution(action="proceed")
            )
            await facility_report(env, handle, "printed")
            await facility_report(env, handle, "delivered")  # out of order: recorded, ignored
            tracking = {
                "carrier": "DHL",
                "tracking_code": "PKG1",
                "tracking_url": "https://t.example/1",
            }
            await facility_report(env, handle, "shipped", tracking=tracking)
            await facility_report(env, handle, "delivered")
            await handle.result()
            history = await handle.fetch_history()
        _write("order_full_lifecycle", history)


async def _hold_answered_in_its_task(name: str, answer: str) -> None:
    """The facility's issue report and the merchant's ``answer`` in one workflow task
    (``hold_answered_in_its_task``); an order that goes on is then shipped and delivered."""
    async with _time_skipping() as env:
        await ensure_search_attributes(env.client, "default")
        async with hold_answered_in_its_task(env, Recorder(), answer) as (handle, state):
            if state.status is not Status.CANCELED:
                tracking = {"carrier": "DHL", "tracking_code": "P1"}
                await facility_report(env, handle, "shipped", tracking=tracking)
                await facility_report(env, handle, "delivered")
            await handle.result()
            history = await handle.fetch_history()
        _write(name, history)


async def order_hold_canceled_in_its_task() -> None:
    """The merchant cancels in the task that brought the facility's issue report: the facility
    is told to cancel the job."""
    await _hold_answered_in_its_task("order_hold_canceled_in_its_task", "cancel")


async def order_hold_readdressed_in_its_task() -> None:
    """The merchant fixes the address in the task that brought the facility's issue report: the
    facility gets the job with the new address and resumes it; then shipped and delivered."""
    await _hold_answered_in_its_task(
        "order_hold_readdressed_in_its_task", "update_shipping_address"
    )


async def webhook_delivery_gave_up() -> None:
    """The delivery workflow: an event refused for 25 hours and given up, the next one
    delivered, the idle end."""
    async with _time_skipping() as env:
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{tmp}/record.db")
            await create_tables(engine)
            try:
                async with running_delivery(env, engine) as delivery:
                    now = await env.get_current_time()
                    state = new_state(order_input(now))
                    state.merchant_id, state.status = delivery.merchant_id, Status.DELIVERED
                    events = [
                        TimelineEvent(seq=5, at=now, type="printed", status="printed"),
                        TimelineEvent(seq=6, at=now, type="delivered", status="delivered"),
                    ]
                    ids = await delivery.emitter.order_changed(state, events)
                    delivery.receiver.fail_events = {ids[0]}
                    handle = env.client.get_workflow_handle(delivery_workflow_id(state.order_id))
                    async with env.time_skipping_unlocked():  # type: ignore[attr-defined]
                        await handle.result()
                    history = await handle.fetch_history()
                    assert delivery.receiver.accepted_ids() == [ids[1]]
                _write("webhook_delivery_gave_up", history)
            finally:
                await engine.dispose()


async def support_case_breached_paused_resolved() -> None:
    """A growth merchant's case opened on Good Friday 2027 at 17:00 in Amsterdam: at risk and
    breached on Tuesday after Easter, answered waiting on the merchant, reminded, answered by
    the merchant, answered in time, resolved, and closed 7 days later."""
    async with _time_skipping() as env:
        await ensure_search_attributes(env.client, "default")
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{tmp}/record.db")
            await create_tables(engine)
            try:
                async with case_world(env, engine, Path(tmp)) as world:
                    opened = amsterdam(2027, 3, 26, 17, 0)
                    await sleep_until(env, opened)
                    handle = await world.open(opened, plan=Plan.GROWTH)
                    await sleep_until(env, amsterdam(2027, 3, 30, 11, 1))
                    await handle.execute_update(
                        SupportCaseWorkflow.agent_reply,
                        AgentReply(
                            message_id="msg_a1",
                            agent_id="agt_1",
                            agent_name="Sam",
                            body="Which order is it?",
                            waiting_on_merchant=True,
                        ),
                    )
                    await env.sleep(timedelta(days=3, minutes=1))
                    await handle.execute_update(
                        SupportCaseWorkflow.merchant_message,
                        MerchantMessage(message_id="msg_m2", body="SHOP-1001"),
                    )
                    await handle.execute_update(
                        SupportCaseWorkflow.agent_reply,
                        AgentReply(
                            message_id="msg_a2",
                            agent_id="agt_1",
                            agent_name="Sam",
                            body="Reprinted and on its way.",
                        ),
                    )
                    await handle.execute_update(
                        SupportCaseWorkflow.resolve, Resolution(agent_id="agt_1")
                    )
                    await env.sleep(timedelta(days=7, minutes=1))
                    final = await handle.result()
                    assert final.status == "closed" and final.sla_state == "met"
                    history = await handle.fetch_history()
                _write("support_case_breached_paused_resolved", history)
            finally:
                await engine.dispose()


async def customer_contact_missed_late_reply_closed() -> None:
    """A Berlin merchant's contact opened on Friday 14 May 2027 at 15:00: the customer writes at
    16:00, the reply is due Tuesday 16:00 (the weekend and Whit Monday off), the merchant is
    reminded at 10:00, misses 16:00, replies late at 17:00, and the contact closes 30 days
    after that last message."""
    async with _time_skipping() as env:
        await ensure_search_attributes(env.client, "default")
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{tmp}/record.db")
            await create_tables(engine)
            try:
                async with contact_world(env, engine, Path(tmp)) as world:
                    opened = berlin(2027, 5, 14, 15, 0)
                    await sleep_until(env, opened)
                    handle = await world.open(opened, body="Your street number is missing.")
                    await sleep_until(env, berlin(2027, 5, 14, 16, 0))
                    await handle.execute_update(
                        CustomerContactWorkflow.customer_message,
                        CustomerReply(message_id="msg_c1", body="It is Hauptstr. 5, sorry!"),
                    )
                    await sleep_until(env, berlin(2027, 5, 18, 10, 1))
                    reminded = await handle.query(CustomerContactWorkflow.contact)
                    assert reminded.sla_state == "at_risk", reminded.sla_state
                    await sleep_until(env, berlin(2027, 5, 18, 16, 1))
                    missed = await handle.query(CustomerContactWorkflow.contact)
                    assert missed.sla_state == "missed" and missed.misses == 1
                    await sleep_until(env, berlin(2027, 5, 18, 17, 0))
                    late = await handle.execute_update(
                        CustomerContactWorkflow.merchant_reply,
                        MerchantReply(message_id="msg_m2", body="Thanks, fixed: Hauptstr. 5."),
                    )
                    assert late.sla_state == "missed" and late.misses == 1
                    await env.sleep(timedelta(days=30, minutes=1))
                    final = await handle.result()
                    assert final.status == "closed" and final.messages == 3
                    history = await handle.fetch_history()
                _write("customer_contact_missed_late_reply_closed", history)
            finally:
                await engine.dispose()


async def order_encrypted_with_test_key() -> None:
    """An order personalized, printed, shipped and delivered with every payload encrypted under
    the test key A (tests/helpers/keys.py); replays need that key among theirs."""
    async with _time_skipping(data_converter(keys(TEST_KEY_A))) as env:
        await ensure_search_attributes(env.client, "default")
        async with order_worker(env.client, Recorder()) as tq:
            inp = order_input(await env.get_current_time(), body=order_body(items=ITEMS))
            handle = await env.client.start_workflow(
                OrderWorkflow.run, inp, id=inp.order_id, task_queue=tq
            )
            await sleep_until(env, inp.received_at + timedelta(minutes=16))  # the link
            state = await handle.query(OrderWorkflow.order)
            await handle.execute_update(
                OrderWorkflow.complete_personalization,
                PersonalizationSubmission(
                    link_id=state.link_id or "", values={"mug-1": {"name": "Ada"}}
                ),
            )
            state = await handle.query(OrderWorkflow.order)
            assert state.cutoff_at is not None
            await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
            await facility_report(env, handle, "printed")
            tracking = {
                "carrier": "DHL",
                "tracking_code": "PKG2",
                "tracking_url": "https://t.example/2",
            }
            await facility_report(env, handle, "shipped", tracking=tracking)
            await facility_report(env, handle, "delivered")
            await handle.result()
            history = await handle.fetch_history()
        _write("order_encrypted_with_test_key", history)


RECORDERS: dict[str, Callable[[], Awaitable[None]]] = {
    "order_full_lifecycle": order_full_lifecycle,
    "webhook_delivery_gave_up": webhook_delivery_gave_up,
    "support_case_breached_paused_resolved": support_case_breached_paused_resolved,
    "customer_contact_missed_late_reply_closed": customer_contact_missed_late_reply_closed,
    "order_encrypted_with_test_key": order_encrypted_with_test_key,
    "order_hold_canceled_in_its_task": order_hold_canceled_in_its_task,
    "order_hold_readdressed_in_its_task": order_hold_readdressed_in_its_task,
}


async def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(RECORDERS))
    if unknown:
        raise SystemExit(f"no recorder for {', '.join(unknown)}; there are {', '.join(RECORDERS)}")
    for name in names or list(RECORDERS):
        await RECORDERS[name]()
        print(f"recorded tests/histories/{name}.json")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
