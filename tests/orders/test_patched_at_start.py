"""An order started with the workflow's patches (``OrderInput.patched_at_start``, which the API
sets on every new order) takes them without recording a patch marker and its search attribute,
and its history replays, even where a worker that did not know the field recorded the markers.
An order started without them records the markers as before (the committed histories). One of
those patches: a change that leaves every search attribute as it is upserts none."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from contracts.orders import AddressChange
from domain.orders import CancelRequest, OrderInput, Status, new_state
from tests.helpers.api import Api, order_json, started
from tests.helpers.workflows import (
    OSLO,
    Recorder,
    clear_of_a_cutoff,
    history_event_types,
    order_input,
    order_worker,
    replays,
    sleep_until,
    start,
    state_of,
    until_status,
)
from worker import WORKFLOW_RUNNER
from workflows.client import data_converter
from workflows.orders import PATCHED_AT_START, OrderWorkflow, search_attributes_for

HISTORIES = Path(__file__).parents[1] / "histories"
# The patches of the code that recorded order_full_lifecycle_before_patched_at_start.json.
KNOWN_TO_THE_RECORDING = {
    "api-writes-creation",
    "project-after-accept",
    "answer-before-projection",
    "cutoff-wait-continues-as-new",
    "reports-wait-for-job",
    "production-report-timeout",
}


async def _patch_events(handle: WorkflowHandle[object, object]) -> list[str]:
    """The history's patch markers, and its upserts of ``TemporalChangeVersion`` (the patches
    a run took, for visibility), by name."""
    found: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            if event.marker_recorded_event_attributes.marker_name == "core_patch":
                found.append("marker")
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "TemporalChangeVersion" in fields.indexed_fields:
                found.append("change version")
    return found


async def test_an_order_started_with_its_patches_records_no_marker(
    env: WorkflowEnvironment,
) -> None:
    # A worker that keeps no workflow: every task replays the history so far, as the next
    # worker does after one died right after the step before.
    async with order_worker(env.client, Recorder(), cached=False) as tq:
        now = await env.get_current_time()
        printed = await start(env.client, tq, order_input(now))
        canceled = await start(env.client, tq, order_input(now))
        before = await start(
            env.client, tq, order_input(now).model_copy(update={"patched_at_start": []})
        )
        answer = await canceled.execute_update(OrderWorkflow.cancel, CancelRequest(reason="dup"))
        assert answer.status is Status.CANCELED
        cutoff = (await state_of(printed)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))
        await until_status(printed, Status.IN_PRODUCTION)
        await until_status(before, Status.IN_PRODUCTION)
        assert (await canceled.result()).status is Status.CANCELED

    # Created (the API wrote it), submitted, watched for the facility's report; canceled by an
    # Update answered with its projection: every patch on those paths, none recorded.
    assert await _patch_events(printed) == []
    assert await _patch_events(canceled) == []
    # The same order without them: a marker and its search attribute at its creation and again
    # at its submission.
    assert await _patch_events(before) == ["marker", "change version"] * 2
    for handle in (printed, canceled, before):
        await replays(handle)


async def test_a_marker_recorded_by_a_worker_older_than_the_field_is_met_on_replay() -> None:
    """During a rollout a worker that does not read ``patched_at_start`` can run an order the
    API started with it: it records the markers of every patch it takes (the lifecycle below
    was recorded that way, by the code before the field). A worker that reads the field
    replays such a run from its history: it meets each marker where that worker took it."""
    text = (HISTORIES / "order_full_lifecycle_before_patched_at_start.json").read_text()
    history = json.loads(text)
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = started["input"]["payloads"][0]
    inp = json.loads(base64.b64decode(payload["data"]))
    assert "patched_at_start" not in inp
    # The patches that code knew; a patch it did not know is never listed for it (the workers
    # roll out before the API that lists a new one: docs/deploying.md).
    inp["patched_at_start"] = [p for p in PATCHED_AT_START if p in KNOWN_TO_THE_RECORDING]
    payload["data"] = base64.b64encode(json.dumps(inp).encode()).decode()
    assert any(
        e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_patch"
        for e in history["events"]
    )

    replayer = Replayer(
        workflows=[OrderWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=data_converter(()),
    )
    result = await replayer.replay_workflow(
        WorkflowHistory.from_json("started-with-patches", history), raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure


async def test_the_api_starts_every_new_order_with_the_patches(api: Api) -> None:
    merchant = await api.merchant()
    response = await api.client.post("/v1/orders", json=order_json(), headers=api.auth(merchant))
    assert response.status_code == 201, response.text
    handle = api.temporal.get_workflow_handle(response.json()["id"])
    await started(handle)
    first = (await handle.fetch_history()).events[0]
    payload = first.workflow_execution_started_event_attributes.input.payloads[0]
    [inp] = await api.temporal.data_converter.decode([payload], [OrderInput])
    assert inp.patched_at_start == list(PATCHED_AT_START)


async def test_a_change_that_leaves_the_search_attributes_as_they_are_upserts_none(
    env: WorkflowEnvironment,
) -> None:
    # Every task replays the history so far (``cached=False``): whether a change upserted is
    # decided again from it, as after a worker died.
    async with order_worker(env.client, Recorder(), cached=False) as tq:
        inp = order_input(await clear_of_a_cutoff(env))
        # Started as the relay starts it: with the order's search attributes.
        handle = await env.client.start_workflow(
            OrderWorkflow.run,
            inp,
            id=inp.order_id,
            task_queue=tq,
            search_attributes=search_attributes_for(new_state(inp)),
        )
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        before = len(await history_event_types(handle))
        address = inp.order.shipping_address.model_copy(update={"address_line_1": "Storgata 5"})
        await handle.execute_update(
            OrderWorkflow.update_shipping_address,
            AddressChange(shipping_address=address, facility=OSLO),
        )
        readdressed = await history_event_types(handle)
        await sleep_until(env, cutoff + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
        after = await history_event_types(handle)

    upsert = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    # The same facility, status and cutoff: nothing for the Web UI to learn.
    assert upsert not in readdressed[before:]
    # In production: the status changed.
    assert upsert in after[len(readdressed) :]
    assert await _patch_events(handle) == []
    await replays(handle)
