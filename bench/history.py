"""History events and Temporal actions per order, counted from the workflows' histories.

Events: every event in the run's history. Actions: what Temporal Cloud bills, as its
documentation lists them (docs.temporal.io, "Temporal Cloud Actions"), read off the history:

==========================================================  ====================================
history event                                               actions
==========================================================  ====================================
WorkflowExecutionStarted (client start, update-with-start)  1 (search attributes given at start
                                                            are included)
ActivityTaskScheduled                                       1
ActivityTaskStarted with ``attempt`` = n                    n - 1 (each retry; the first attempt
                                                            is the scheduling)
MarkerRecorded                                              1 per workflow task that recorded
                                                            any, however many: Cloud counts all
                                                            RecordMarker commands of one workflow
                                                            task as one action. Shown apart:
                                                            ``local_activities`` (tasks with a
                                                            local activity) and
                                                            ``version_markers`` (tasks whose only
                                                            marker is a ``patched()`` one, which
                                                            the docs do not exempt, so we count)
WorkflowTaskCompleted ``metering_metadata.``                that many (local activity retries)
``nonfirst_local_activity_execution_attempts``
TimerStarted (also the timer of a ``wait_condition`` with   1
a timeout)
WorkflowExecutionSignaled                                   1
WorkflowExecutionUpdateAccepted                             1
UpsertWorkflowSearchAttributes                              1, unless it sets only
                                                            ``TemporalChangeVersion`` (exempt)
StartChildWorkflowExecutionInitiated                        2
WorkflowExecutionContinuedAsNew                             1 (the new run's start)
WorkflowExecutionOptionsUpdated, NexusOperationScheduled,   1
NexusOperationCancelRequested
everything else (workflow tasks, activity completions,     0
timer fired, closing events, SignalExternal... on the
sender's side)
==========================================================  ====================================

Not in a history, so not counted here: queries (printflow's API never queries: reads come from
the read model), rejected Updates (a refusal by a validator is one action; none happen on the
paths measured), activity heartbeats (printflow's activities do not heartbeat), workflow task
heartbeats of local activities running longer than the task timeout (projections take
milliseconds). The webhook delivery workflows of merchants with a ``webhook_url`` are workflows
of their own, with their own actions; the bench's merchant has none.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus

from bench.common import SOON, Api, BenchError, order_body, report_events

ONE_ACTION = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "workflow_started",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity_scheduled",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer_started",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update_accepted",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued_as_new",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: "options_updated",
    EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED: "nexus",
    EventType.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED: "nexus",
}
CHANGE_VERSION = "TemporalChangeVersion"
PATCH_MARKER = "core_patch"  # what the SDK records for workflow.patched()


def actions(events: Iterable[HistoryEvent]) -> Counter[str]:
    """Billable actions of one history, by kind (see the module docstring for the rule)."""
    counted: Counter[str] = Counter()
    marker_tasks: dict[int, set[str]] = {}
    for event in events:
        kind = event.event_type
        if kind in ONE_ACTION:
            counted[ONE_ACTION[kind]] += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            retries = event.activity_task_started_event_attributes.attempt - 1
            if retries > 0:
                counted["activity_retry"] += retries
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            names = marker_tasks.setdefault(attrs.workflow_task_completed_event_id, set())
            names.add(attrs.marker_name)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            metering = event.workflow_task_completed_event_attributes.metering_metadata
            if metering.nonfirst_local_activity_execution_attempts:
                counted["local_activity_retry"] += (
                    metering.nonfirst_local_activity_execution_attempts
                )
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {CHANGE_VERSION}:
                counted["search_attributes_upsert"] += 1
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            counted["child_workflow"] += 2
    for names in marker_tasks.values():
        counted["version_markers" if names == {PATCH_MARKER} else "local_activities"] += 1
    return counted


def _short(kind: int) -> str:
    return EventType.Name(kind).removeprefix("EVENT_TYPE_").lower()


async def measure(client: Client, workflow_ids: list[str]) -> dict[str, Any]:
    """Events and actions per workflow over ``workflow_ids`` (mean, min, max, by kind)."""
    totals: list[int] = []
    billed: list[int] = []
    by_action: Counter[str] = Counter()
    by_event: Counter[str] = Counter()
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        events = list(history.events)
        counted = actions(events)
        totals.append(len(events))
        billed.append(sum(counted.values()))
        by_action.update(counted)
        by_event.update(_short(e.event_type) for e in events)
    n = len(workflow_ids)
    return {
        "workflows": n,
        "events": statistics.mean(totals),
        "events_min": min(totals),
        "events_max": max(totals),
        "actions": statistics.mean(billed),
        "actions_min": min(billed),
        "actions_max": max(billed),
        "actions_by_kind": {k: v / n for k, v in sorted(by_action.items())},
        "events_by_type": {k: v / n for k, v in sorted(by_event.items())},
    }


async def delivered_sample(
    api: Api, simulator_url: str, client: Client, count: int, within: float = 120
) -> list[str]:
    """``count`` orders run from create to ``delivered``: each waits for a cutoff a few seconds
    away (a timer, as every real order), then the facility reports printed, shipped and
    delivered a moment apart, and the workflow closes on delivery."""
    await report_events(simulator_url, after=0.2)
    tag = uuid.uuid4().hex[:6]
    orders = [await api.create(order_body(f"H-{tag}-{i}", SOON, api)) for i in range(count)]
    deadline = time.monotonic() + within
    for order in orders:
        handle = client.get_workflow_handle(order["id"])
        while True:
            description = await handle.describe()
            if description.status == WorkflowExecutionStatus.COMPLETED:
                break
            if description.status != WorkflowExecutionStatus.RUNNING:
                raise BenchError(f"order {order['id']} ended {description.status}")
            if time.monotonic() > deadline:
                state, _ = await api.get(order["id"])
                raise BenchError(
                    f"order {order['id']} still {state['status']} after {within:.0f} s"
                )
            await asyncio.sleep(0.25)
        state, _ = await api.get(order["id"])
        if state["status"] != "delivered":
            raise BenchError(f"order {order['id']} closed as {state['status']}, not delivered")
    return [order["id"] for order in orders]
