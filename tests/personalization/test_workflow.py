"""Orders that wait for their customer: the merchant's e-mail, expiring links, completion."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.orders import PersonalizationSubmission
from domain.orders import CancelRequest, HoldResolution, Status
from tests.helpers.polling import eventually
from tests.helpers.workflows import (
    Recorder,
    order_body,
    order_input,
    order_worker,
    sleep_until,
    start,
    state_of,
    until,
    until_status,
)
from workflows.orders import OrderWorkflow

MUG_NAME = {
    "item_reference_id": "mug-1",
    "product_uid": "mug_11oz_white",
    "quantity": 1,
    "files": [{"type": "default", "url": "https://files.example/mug.png"}],
    "personalization": {
        "fields": [
            {
                "name": "name",
                "label": "Name on the mug",
                "type": "text",
                "max_length": 20,
                "required": True,
            },
            {"name": "photo", "label": "Photo", "type": "image_url"},
        ]
    },
}
POSTER = {
    "item_reference_id": "poster-1",
    "product_uid": "poster_a3",
    "quantity": 2,
    "files": [{"type": "default", "url": "https://files.example/poster.pdf"}],
}
DELAY = timedelta(minutes=15)
TTL = timedelta(days=7)


def personalized(approval: str = "auto", items: list[dict[str, Any]] | None = None) -> Any:
    return order_body(items=items or [MUG_NAME, POSTER])


async def _started(env: WorkflowEnvironment, tq: str, approval: str = "auto") -> Any:
    inp = order_input(await env.get_current_time(), body=personalized(), approval=approval)
    return inp, await start(env.client, tq, inp)


async def test_the_merchant_gets_one_link_fifteen_minutes_after_the_order(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq)
        state = await state_of(handle)
        assert state.status is Status.PENDING_PERSONALIZATION
        arrived = inp.received_at

        await sleep_until(env, arrived + DELAY - timedelta(seconds=1))
        assert rec.links == [], "no e-mail before 15 minutes"
        await env.sleep(timedelta(seconds=2))
        await eventually("the first link's e-mail", lambda: rec.links)
        assert [link.seq for link in rec.links] == [1]
        link = rec.links[0]
        assert link.support_email == "support@shop.test"
        assert [i.item_reference_id for i in link.items] == ["mug-1"], "only what needs it"
        # Seven days from the e-mail (the timer fires within a moment of the 15 minutes).
        assert abs(link.expires_at - (arrived + DELAY + TTL)) < timedelta(seconds=2)

        await sleep_until(env, link.expires_at - timedelta(minutes=1))
        assert len(rec.links) == 1, "exactly one e-mail while the link lives"
        state = await state_of(handle)
        assert state.status is Status.PENDING_PERSONALIZATION
        assert rec.jobs == [], "the whole order waits, the poster too"


async def test_an_expired_link_is_replaced_by_a_new_one(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq)
        await sleep_until(env, inp.received_at + DELAY + TTL + timedelta(seconds=5))
        await eventually("the second link's e-mail", lambda: len(rec.links) >= 2)
        assert [link.seq for link in rec.links] == [1, 2]
        # The workflow takes the link in once the activity that e-mailed it has returned.
        state = await until(handle, lambda s: s.link_seq == 2)
        assert state.link_id == "lnk-2"
        assert state.link_expires_at is not None
        assert state.link_expires_at - (inp.received_at + DELAY + 2 * TTL) < timedelta(minutes=1)

        with pytest.raises(WorkflowUpdateFailedError) as old:
            await handle.execute_update(
                OrderWorkflow.complete_personalization,
                PersonalizationSubmission(link_id="lnk-1", values={"mug-1": {"name": "Ada"}}),
            )
        assert isinstance(old.value.cause, ApplicationError)
        assert old.value.cause.type == "link_superseded"


async def test_a_customer_quicker_than_the_e_mail_activity_gets_their_order_personalized(
    env: WorkflowEnvironment,
) -> None:
    # The e-mail is out, but its activity has not reported back: the workflow does not know the
    # link yet when the customer, who already has it, submits.
    rec = Recorder(links_report_after=asyncio.Event())
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq)
        await sleep_until(env, inp.received_at + DELAY + timedelta(seconds=1))
        await eventually("the link's e-mail", lambda: rec.links)
        submitted = asyncio.create_task(
            handle.execute_update(
                OrderWorkflow.complete_personalization,
                PersonalizationSubmission(
                    link_id="lnk-1", link_seq=1, values={"mug-1": {"name": "Ada"}}
                ),
            )
        )
        await asyncio.sleep(0.5)
        assert not submitted.done(), "the answer waits for the link's activity"
        rec.links_report_after.set()
        state = await submitted
        assert state.status is Status.SCHEDULED
        assert state.link_id == "lnk-1"
        state = await handle.query(OrderWorkflow.order)
        assert state.items[0].personalization_values == {"name": "Ada"}


async def test_completion_on_day_six_schedules_the_order_and_stops_the_emails(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq)
        await sleep_until(env, inp.received_at + timedelta(days=6))
        with pytest.raises(WorkflowUpdateFailedError) as invalid:
            await handle.execute_update(
                OrderWorkflow.complete_personalization,
                PersonalizationSubmission(link_id="lnk-1", values={"mug-1": {"name": "X" * 21}}),
            )
        cause = invalid.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "invalid_personalization"
        assert "mug-1.name" in cause.details[0]
        assert (await state_of(handle)).status is Status.PENDING_PERSONALIZATION

        state = await handle.execute_update(
            OrderWorkflow.complete_personalization,
            PersonalizationSubmission(
                link_id="lnk-1",
                values={"mug-1": {"name": "  Ada  ", "photo": "https://img.example/ada.jpg"}},
            ),
        )
        assert state.status is Status.SCHEDULED and state.cutoff_at is not None

        await sleep_until(env, inp.received_at + timedelta(days=30))
        await eventually("the print job", lambda: rec.jobs)
        assert len(rec.links) == 1, "no more e-mails once personalized"
        assert len(rec.jobs) == 1
        items = {i.item_reference_id: i for i in rec.jobs[0].items}
        assert items["mug-1"].personalization == {
            "name": "Ada",
            "photo": "https://img.example/ada.jpg",
        }
        assert items["poster-1"].personalization is None

        with pytest.raises(WorkflowUpdateFailedError) as again:
            await handle.execute_update(
                OrderWorkflow.complete_personalization,
                PersonalizationSubmission(link_id="lnk-1", values={"mug-1": {"name": "Bob"}}),
            )
        assert isinstance(again.value.cause, ApplicationError)
        assert again.value.cause.type == "already_personalized"


async def test_manual_approval_merchants_approve_after_personalization(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq, approval="manual")
        await sleep_until(env, inp.received_at + DELAY + timedelta(minutes=1))
        state = await handle.execute_update(
            OrderWorkflow.complete_personalization,
            PersonalizationSubmission(link_id="lnk-1", values={"mug-1": {"name": "Ada"}}),
        )
        assert state.status is Status.PENDING_APPROVAL


async def test_approving_without_personalization_sends_the_order_as_it_is(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq)
        await sleep_until(env, inp.received_at + timedelta(days=1))
        state = await handle.execute_update(OrderWorkflow.approve)
        assert state.status is Status.SCHEDULED
        state = await handle.query(OrderWorkflow.order)
        assert {i.item_reference_id: i.personalization_status for i in state.items} == {
            "mug-1": "skipped",
            "poster-1": "not_required",
        }
        await sleep_until(env, inp.received_at + timedelta(days=20))
        await eventually("the print job", lambda: rec.jobs)
        assert len(rec.links) == 1, "approval ends the links"
        assert len(rec.jobs) == 1 and rec.jobs[0].items[0].personalization is None


async def test_cancel_ends_the_links(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq)
        await sleep_until(env, inp.received_at + timedelta(days=2))
        await handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason="out of stock"))
        assert (await handle.result()).status is Status.CANCELED
        assert len(rec.links) == 1
        assert rec.jobs == []


async def test_an_order_waiting_a_year_keeps_a_small_history(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp, handle = await _started(env, tq)
        first_run = (await handle.describe()).run_id
        await sleep_until(env, inp.received_at + DELAY + TTL * 52 + timedelta(minutes=1))
        await eventually("the 53rd link's e-mail", lambda: len(rec.links) >= 53)
        assert [link.seq for link in rec.links] == list(range(1, 54))

        current = env.client.get_workflow_handle(inp.order_id)
        described = await current.describe()
        assert described.run_id != first_run, "the run continued as new"
        history = await current.fetch_history()
        assert len(history.events) < 150, "the current run's history stays bounded"

        state = await until(current, lambda s: s.link_seq == 53)
        assert state.status is Status.PENDING_PERSONALIZATION
        done = await current.execute_update(
            OrderWorkflow.complete_personalization,
            PersonalizationSubmission(link_id="lnk-53", values={"mug-1": {"name": "Ada"}}),
        )
        assert done.status is Status.SCHEDULED


async def test_a_refused_link_e_mail_holds_the_order_until_the_merchant_sends_it_again(
    env: WorkflowEnvironment,
) -> None:
    """No retry changes a mail server that refuses the address: the order waits for a person
    on hold, instead of retrying forever with nobody the wiser."""
    rec = Recorder(refuse_links=True)
    async with order_worker(env.client, rec) as tq:
        _, handle = await _started(env, tq)
        await env.sleep(DELAY + timedelta(seconds=1))
        held = await until_status(handle, Status.ON_HOLD)
        assert held.hold is not None and held.hold.kind == "notification_failed"
        assert "refused" in held.hold.description
        assert rec.links == []
        await eventually("the hold to be projected", lambda: rec.events()[-1:] == ["on_hold"])

        rec.refuse_links = False
        await handle.execute_update(OrderWorkflow.resolve_hold, HoldResolution(action="proceed"))
        await env.sleep(timedelta(seconds=1))
        await eventually("the new link's e-mail", lambda: rec.links)
        again = await state_of(handle)
        assert again.status is Status.PENDING_PERSONALIZATION
        assert [link.seq for link in rec.links] == [1]
