"""After submission: what the facility reports, holds that wait for the merchant, the end."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.orders import AddressChange, PrintJobState
from domain.orders import (
    CancelRequest,
    HoldResolution,
    OrderState,
    Status,
)
from tests.helpers.polling import apoll, eventually
from tests.helpers.workflows import (
    OSLO,
    Recorder,
    facility_report,
    history_event_types,
    hold_answered_in_its_task,
    in_production,
    order_input,
    order_worker,
    replays,
    sleep_until,
    start,
    state_of,
    until,
    until_status,
)
from workflows.orders import OrderWorkflow


def _tracking(code: str) -> dict[str, Any]:
    return {
        "tracking": {
            "carrier": "DHL",
            "tracking_code": code,
            "tracking_url": f"https://t.example/{code}",
        }
    }


async def test_printed_shipped_in_two_packages_delivered_then_done(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(env, handle, "printed")
        await facility_report(env, handle, "shipped", **_tracking("PKG1"))
        await facility_report(env, handle, "shipped", **_tracking("PKG2"))
        state = await state_of(handle)
        assert state.status is Status.SHIPPED
        assert [s.tracking_code for s in state.shipments] == ["PKG1", "PKG2"]
        await facility_report(env, handle, "delivered")
        result = await handle.result()
        assert result.status is Status.DELIVERED
        assert rec.statuses()[-4:] == ["printed", "shipped", "shipped", "delivered"]
        assert rec.events()[-4:] == ["printed", "shipment", "shipment", "delivered"]


async def test_a_repeated_event_id_is_a_no_op(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(env, handle, "shipped", event_id="evt-1", **_tracking("PKG1"))
        await facility_report(env, handle, "shipped", event_id="evt-1", **_tracking("PKG1"))
        state = await state_of(handle)
        assert len(state.shipments) == 1
        await eventually("the shipment to be projected", lambda: "shipment" in rec.events())
        assert rec.events().count("shipment") == 1


async def test_events_that_do_not_fit_are_recorded_and_change_nothing(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(env, handle, "delivered")
        state = await state_of(handle)
        assert state.status is Status.IN_PRODUCTION
        await eventually(
            "the ignored report to be projected", lambda: rec.events()[-1:] == ["event_ignored"]
        )
        ignored = rec.projections[-1].new_events[-1]
        assert ignored.type == "event_ignored" and ignored.detail["event"] == "delivered"
        # Shipped after that still works: the order was not corrupted.
        await facility_report(env, handle, "shipped", **_tracking("PKG1"))
        assert (await state_of(handle)).status is Status.SHIPPED


async def test_an_issue_holds_the_order_reminds_and_resumes_when_the_merchant_proceeds(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(
            env,
            handle,
            "issue",
            issue={"kind": "file_quality", "description": "the image is 72 dpi"},
        )
        state = await state_of(handle)
        assert state.status is Status.ON_HOLD and state.hold is not None

        # An activity after the hold: it may end later.
        await eventually("the merchant's notice of the hold", lambda: rec.notices)
        assert [n.notice for n in rec.notices] == ["hold"]
        assert rec.notices[0].description == "the image is 72 dpi"

        await env.sleep(timedelta(days=1, minutes=1))
        await eventually("the merchant's reminder", lambda: len(rec.notices) >= 2)
        assert [n.notice for n in rec.notices] == ["hold", "reminder"]

        with pytest.raises(WorkflowUpdateFailedError) as wrong:
            await handle.execute_update(
                OrderWorkflow.update_shipping_address,
                AddressChange(shipping_address=state.shipping_address, facility=OSLO),
            )
        assert isinstance(wrong.value.cause, ApplicationError)
        assert wrong.value.cause.type == "order_on_hold"

        resumed = await handle.execute_update(
            OrderWorkflow.resolve_hold, HoldResolution(action="proceed")
        )
        assert resumed.status is Status.IN_PRODUCTION and resumed.hold is None
        await env.sleep(timedelta(seconds=5))
        await eventually("the facility's resume", lambda: rec.outcomes)
        assert [(o.outcome, o.job_id) for o in rec.outcomes] == [("resume", "job-1")]
        await env.sleep(timedelta(days=3))
        assert len(rec.notices) == 2, "no reminders after the answer"


async def test_an_address_hold_resumes_with_the_fixed_address(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(env, handle, "printed")
        await facility_report(
            env,
            handle,
            "issue",
            issue={"kind": "address_invalid", "description": "post code 0000 does not exist"},
        )
        state = await state_of(handle)
        fixed = state.shipping_address.model_copy(update={"post_code": "0154"})
        after = await handle.execute_update(
            OrderWorkflow.update_shipping_address,
            AddressChange(shipping_address=fixed, facility=OSLO),
        )
        assert after.status is Status.PRINTED, "back where it was before the hold"
        assert after.shipping_address.post_code == "0154"
        # The facility gets the fixed address with the resume, not just "resume".
        await env.sleep(timedelta(seconds=1))
        (outcome,) = await eventually("the facility's resume", lambda: rec.outcomes)
        assert outcome.outcome == "resume" and outcome.job is not None
        assert outcome.job.shipping_address.post_code == "0154"


async def test_a_facility_that_refuses_the_resume_puts_the_order_back_on_hold(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder(refuse_resume=True)
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(env, handle, "issue", issue={"kind": "other", "description": "paper"})
        await handle.execute_update(OrderWorkflow.resolve_hold, HoldResolution(action="proceed"))
        await env.sleep(timedelta(seconds=1))
        state = await until(handle, lambda s: s.hold is not None)
        assert state.status is Status.ON_HOLD
        assert state.hold is not None and state.hold.kind == "facility_rejected"
        assert state.hold.resume_to is Status.IN_PRODUCTION
        await eventually(
            "the rejection to be projected",
            lambda: rec.events()[-2:] == ["hold_resolved", "print_job_rejected"],
        )


async def test_replaced_files_release_the_hold(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(
            env, handle, "issue", issue={"kind": "file_quality", "description": "cropped"}
        )
        new_files = {"item-1": [{"type": "default", "url": "https://files.example/v2.pdf"}]}
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                OrderWorkflow.resolve_hold,
                HoldResolution.model_validate(
                    {"action": "replace_files", "files": {"nope": new_files["item-1"]}}
                ),
            )
        state = await handle.execute_update(
            OrderWorkflow.resolve_hold,
            HoldResolution.model_validate({"action": "replace_files", "files": new_files}),
        )
        assert state.status is Status.IN_PRODUCTION
        assert state.items == [], "an Update answers without the items (the API has them)"
        # Its projection carries the new items: answered with, they would be in the history
        # twice, so it answers once they are written, and the API reads them from the row.
        assert state.new_events is None
        assert str(rec.projections[-1].given().items[0].files[0].url).endswith("/v2.pdf")
        state = await handle.query(OrderWorkflow.order)
        assert str(state.items[0].files[0].url) == "https://files.example/v2.pdf"
        await env.sleep(timedelta(seconds=1))
        (outcome,) = await eventually("the facility's resume", lambda: rec.outcomes)
        assert outcome.job is not None
        assert outcome.job.items[0].files == [
            {"type": "default", "url": "https://files.example/v2.pdf"}
        ]


async def test_nobody_answers_the_hold_so_the_order_is_canceled(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(
            env, handle, "issue", issue={"kind": "other", "description": "paper jam"}
        )
        await env.sleep(timedelta(days=7, minutes=5))
        result = await handle.result()
        assert result.status is Status.CANCELED
        assert [n.notice for n in rec.notices] == ["hold"] + ["reminder"] * 6 + ["canceled"]
        assert [o.outcome for o in rec.outcomes] == ["cancel"]


async def test_the_merchant_cancels_a_held_order_and_the_facility_is_told(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(
            env, handle, "issue", issue={"kind": "other", "description": "paper jam"}
        )
        canceled = await handle.execute_update(
            OrderWorkflow.cancel, CancelRequest(reason="no time")
        )
        assert canceled.status is Status.CANCELED
        await handle.result()
        assert [o.outcome for o in rec.outcomes] == ["cancel"]


@pytest.mark.parametrize("answer", ["cancel", "resolve_hold", "update_shipping_address"])
async def test_a_hold_answered_in_the_task_that_brought_it_still_tells_the_facility(
    env: WorkflowEnvironment, answer: str
) -> None:
    """The facility's report and the merchant's answer reach the worker in one workflow task.
    The order never waits on the hold, and the facility, which holds the job, is still told how
    the hold ended, by workers that replay the history at every step."""
    rec = Recorder()
    async with hold_answered_in_its_task(env, rec, answer) as (handle, state):
        (outcome,) = await eventually("the facility to be told", lambda: rec.outcomes)
        if answer == "cancel":
            assert state.status is Status.CANCELED
            assert (outcome.outcome, outcome.job) == ("cancel", None)
            await handle.result()
        else:
            assert state.status is Status.IN_PRODUCTION
            assert outcome.outcome == "resume" and outcome.job is not None
            post_code = "0150" if answer == "update_shipping_address" else "0154"
            assert outcome.job.shipping_address.post_code == post_code
            assert (await state_of(handle)).hold is None
        types = await history_event_types(handle)
        signaled = types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
        accepted = types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
        between = types[signaled:accepted]
        assert between.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1, "one task"
        await replays(handle)
        assert len(rec.outcomes) == 1


async def test_a_refused_print_job_goes_again_when_the_merchant_proceeds(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder(reject_with="unknown product")
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, order_input(await env.get_current_time()))
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))
        await until_status(handle, Status.ON_HOLD)
        rec.reject_with = None
        await handle.execute_update(OrderWorkflow.resolve_hold, HoldResolution(action="proceed"))
        await env.sleep(timedelta(seconds=5))
        await until(handle, lambda s: s.status is Status.IN_PRODUCTION and s.job_id is not None)
        assert len(rec.jobs) == 1
        assert rec.outcomes == [], "there was no job at the facility to resume"


async def test_a_shipped_order_without_delivery_closes_after_the_timeout(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(env, handle, "shipped", **_tracking("PKG1"))
        await env.sleep(timedelta(days=29))
        await facility_report(env, handle, "shipped", **_tracking("PKG2"))
        await env.sleep(timedelta(days=29))
        assert (await state_of(handle)).status is Status.SHIPPED, "the second package restarts it"
        await env.sleep(timedelta(days=2))
        result = await handle.result()
        assert result.status is Status.SHIPPED
        assert rec.events()[-1] == "closed"


async def test_a_returned_order_ends(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await facility_report(env, handle, "shipped", **_tracking("PKG1"))
        await facility_report(env, handle, "returned")
        assert (await handle.result()).status is Status.RETURNED


async def test_reports_that_come_before_the_submissions_answer_wait_for_the_job(
    env: WorkflowEnvironment,
) -> None:
    """The facility made the job, but its answer is slow (lost, its retry behind a 429): the
    facility's printed and shipped reports come while the order is still scheduled. They wait
    for the job and are applied in order, a repeat of one of them changes nothing."""
    rec = Recorder(submit_answers_after=asyncio.Event())
    assert rec.submit_answers_after is not None
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, order_input(await env.get_current_time()))
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))

        # Made at the facility; its answer has not come back.
        await eventually("the job to be made", lambda: rec.jobs)
        await facility_report(env, handle, "printed", event_id="evt-printed")
        await facility_report(env, handle, "shipped", event_id="evt-shipped", **_tracking("PKG1"))
        await facility_report(env, handle, "printed", event_id="evt-printed")  # a redelivery
        state = await state_of(handle)
        assert state.status is Status.SCHEDULED and state.seen_event_ids == []
        assert "event_ignored" not in rec.events()

        rec.submit_answers_after.set()

        async def shipped() -> OrderState | None:
            state = await state_of(handle)
            return state if state.status is Status.SHIPPED else None

        state = await apoll("the waiting reports to be applied", shipped)
        assert [s.tracking_code for s in state.shipments] == ["PKG1"]
        assert state.seen_event_ids == ["evt-printed", "evt-shipped"]
        # The timeline is written by the projection activity, which can end after the query
        # above already answers "shipped".
        await eventually("the shipment to be projected", lambda: "shipment" in rec.events())
        assert rec.events()[-3:] == ["in_production", "printed", "shipment"]
        assert "event_ignored" not in rec.events()


async def test_an_order_the_facility_stops_reporting_on_asks_for_the_jobs_state(
    env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await env.sleep(timedelta(days=2))
        await facility_report(env, handle, "printed")  # a report: the clock starts again
        await env.sleep(timedelta(days=2))
        assert rec.job_queries == []

        rec.job_state = PrintJobState.model_validate(
            {
                "job_id": "job-1",
                "status": "accepted",
                "stage": "shipped",
                "tracking": {"carrier": "DHL", "tracking_code": "PKG9", "tracking_url": None},
            }
        )
        with caplog.at_level(logging.WARNING):
            await env.sleep(timedelta(days=1, hours=1))
            await eventually("the facility to be asked", lambda: rec.job_queries)
            # The workflow applies the facility's answer once that activity has returned.
            state = await until(handle, lambda s: s.status is Status.SHIPPED)
        assert [(q.facility_id, q.job_id) for q in rec.job_queries] == [("oslo", "job-1")]
        assert [s.tracking_code for s in state.shipments] == ["PKG9"]
        assert any("no report from facility oslo" in r.getMessage() for r in caplog.records)

        # The facility's own report of that package comes late: it is not a second package.
        await facility_report(env, handle, "shipped", **_tracking("PKG9"))
        state = await state_of(handle)
        assert [s.tracking_code for s in state.shipments] == ["PKG9"]
        await facility_report(env, handle, "delivered")
        assert (await handle.result()).status is Status.DELIVERED


async def test_a_facility_that_says_nothing_new_is_asked_again_after_each_timeout(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await in_production(env, tq)
        await env.sleep(timedelta(days=3, hours=1))
        await eventually("the facility to be asked", lambda: rec.job_queries)
        assert len(rec.job_queries) == 1
        assert (await state_of(handle)).status is Status.IN_PRODUCTION
        assert "event_ignored" not in rec.events()
        await env.sleep(timedelta(days=3))
        await eventually("the facility to be asked again", lambda: len(rec.job_queries) >= 2)
        assert len(rec.job_queries) == 2
