"""What leaves the workflow follows its history: how changes are projected, and in what order.

The read model is written by the ``project_order`` activity. A local activity runs before its
workflow task is committed, so only changes whose cause the history already holds may be
projected that way; an Update's change waits for a regular activity, which the server starts
only after the Update's acceptance is persisted. These tests read the real history.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.orders import ProductionSignal
from domain.orders import CancelRequest, ProductionEventIn, Status
from tests.helpers.polling import apoll
from tests.helpers.workflows import (
    Recorder,
    history_event_types,
    order_input,
    sleep_until,
    start,
    state_of,
    until_status,
)
from worker import WORKFLOW_RUNNER
from workflows.orders import OrderWorkflow


def _worker(env: WorkflowEnvironment, rec: Recorder, task_queue: str) -> Worker:
    return Worker(
        env.client,
        task_queue=task_queue,
        workflows=[OrderWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=rec.activities(),
        # No sticky cache: a task goes to whichever worker polls next, even after a restart.
        max_cached_workflows=0,
    )


async def test_a_cancel_is_projected_only_after_its_acceptance_is_in_the_history(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder(slow_projections={"canceled": 1.0})
    tq = "tq-" + uuid.uuid4().hex
    async with _worker(env, rec, tq):
        handle = await start(env.client, tq, order_input(await env.get_current_time()))
        before = len(await history_event_types(handle))
        canceled = await handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason="dup"))
        assert canceled.status is Status.CANCELED
        # It answers with its projection, which the API writes (``UpdateAnswer``): the order's
        # items and metadata are in the read model already, so the answer leaves them out.
        assert [e.type for e in canceled.new_events or []] == ["canceled"]
        assert canceled.items == [] and canceled.metadata is None
        assert canceled.projection().unchanged == ["items", "metadata"]
        # The workflow's own write of it comes after the answer, and the run waits for it.
        assert (await handle.result()).status is Status.CANCELED
        assert rec.statuses()[-1] == "canceled"
        assert rec.projections[-1].given().version == canceled.version
        types = await history_event_types(handle)

    accepted = types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    completed = types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    scheduled = [
        i for i, t in enumerate(types) if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    written = [i for i, t in enumerate(types) if t == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    # The projection is a regular activity, scheduled in the task that accepted the Update ...
    assert scheduled and accepted < scheduled[-1] < completed
    # ... never a local activity, which would have run before that task was committed ...
    assert "local_activity" not in types[before:]
    # ... and the Update completes in that task, not once the projection has been written.
    assert completed < written[-1]
    # The price, in history events, from acceptance to completion: the projection's scheduling
    # and the search attribute, and once per run the two patch markers with theirs.
    assert completed - accepted <= 8


async def test_a_worker_gone_right_after_an_update_answered_leaves_its_write_to_the_next(
    env: WorkflowEnvironment,
) -> None:
    """The cancel is answered (the API writes it), then the worker stops before its own write of
    the cancel has ended: the next worker writes it, and the run closes only after that write,
    so the read model ends canceled even when the API's write never happened."""
    gone = Recorder(slow_projections={"canceled": 600.0})
    tq = "tq-" + uuid.uuid4().hex
    async with _worker(env, gone, tq):
        handle = await start(env.client, tq, order_input(await env.get_current_time()))
        canceled = await handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason="dup"))
        assert canceled.status is Status.CANCELED
    assert "canceled" not in gone.statuses()

    after = Recorder()
    async with _worker(env, after, tq):
        closed = await handle.result()
    assert closed.status is Status.CANCELED
    assert after.statuses() == ["canceled"]
    assert after.projections[0].given().version == canceled.version == closed.version
    assert after.projections[0].new_events == canceled.new_events


async def test_changes_made_in_one_task_are_projected_in_order_each_as_it_was(
    env: WorkflowEnvironment,
) -> None:
    """Two facility reports land in one workflow task: printed, then shipped. Each projection
    carries the state as of its own change, and webhooks (emitted by the projection) follow
    the order in which the changes happened, even when the first write is the slower one."""
    rec = Recorder(slow_projections={"printed": 0.5})
    tq = "tq-" + uuid.uuid4().hex
    async with _worker(env, rec, tq):
        handle = await start(env.client, tq, order_input(await env.get_current_time()))
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)

    # No worker: both signals wait in the history and reach the next worker in one task.
    now = await env.get_current_time()
    for kind, extra in (
        ("printed", {}),
        ("shipped", {"tracking": {"carrier": "DHL", "tracking_code": "JJD1"}}),
    ):
        event = ProductionEventIn.model_validate(
            {"event_id": uuid.uuid4().hex, "order_id": handle.id, "type": kind, **extra}
        )
        await handle.signal(
            OrderWorkflow.facility_event, ProductionSignal(event=event, received_at=now)
        )

    async with _worker(env, rec, tq):
        assert (await state_of(handle)).status is Status.SHIPPED

        async def all_projected() -> bool:
            return rec.statuses()[-1:] == ["shipped"]

        await apoll("the shipment to be projected", all_projected)
        events = [e.type for p in rec.projections for e in p.new_events]
        assert events == ["in_production", "printed", "shipment"]
        versions = [p.given().version for p in rec.projections]
        assert versions == sorted(versions), "a later change never projected before an earlier"
        for projection in rec.projections:
            # Each projection shows the state its newest event left, not a later one.
            newest = projection.new_events[-1]
            assert projection.given().event_seq == newest.seq
            if newest.status is not None:
                assert projection.given().status.value == newest.status
