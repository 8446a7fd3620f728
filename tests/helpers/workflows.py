"""Recording fakes for the order workflow's activities, and order builders for tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from contracts.errors import FACILITY_REJECTED, MAIL_REJECTED
from contracts.orders import (
    AddressChange,
    DelayNotice,
    FacilityOutcome,
    HoldNotice,
    IssueLink,
    JobQuery,
    LinkIssued,
    PrintJobRequest,
    PrintJobResult,
    PrintJobState,
    ProductionSignal,
    Projection,
    UpdateAnswer,
)
from domain.facilities import FacilityInfo, Schedule
from domain.orders import (
    CancelRequest,
    HoldResolution,
    OrderCreate,
    OrderInput,
    OrderState,
    ProductionEventIn,
    Status,
)
from domain.schedule import next_cutoff
from tests.helpers.polling import PATIENCE, apoll
from worker import WORKFLOW_RUNNER
from workflows.orders import PATCHED_AT_START, OrderWorkflow

OSLO = FacilityInfo(
    id="oslo",
    name="Oslo",
    timezone="Europe/Oslo",
    api_url="http://facility.invalid",
    schedule=Schedule(daily=["00:00"], peak_daily=["00:00", "12:00"], peak_months=[10, 11, 12]),
)
SYDNEY = FacilityInfo(
    id="sydney",
    name="Sydney",
    timezone="Australia/Sydney",
    api_url="http://facility.invalid",
    schedule=Schedule(daily=["00:00"]),
)


def order_body(reference: str = "SHOP-1001", **overrides: Any) -> OrderCreate:
    body: dict[str, Any] = {
        "order_reference_id": reference,
        "shipping_address": {
            "first_name": "Kari",
            "last_name": "Nordmann",
            "address_line_1": "Karl Johans gate 1",
            "city": "Oslo",
            "post_code": "0154",
            "country": "NO",
            "email": "kari@example.com",
        },
        "items": [
            {
                "item_reference_id": "item-1",
                "product_uid": "poster_a3_matte",
                "quantity": 2,
                "files": [{"type": "default", "url": "https://files.example/poster.pdf"}],
            }
        ],
    }
    body.update(overrides)
    return OrderCreate.model_validate(body)


def order_input(
    received_at: datetime,
    *,
    facility: FacilityInfo = OSLO,
    approval: str = "auto",
    body: OrderCreate | None = None,
) -> OrderInput:
    return OrderInput(
        order_id="ord_" + uuid.uuid4().hex,
        merchant_id="mer_test",
        support_email="support@shop.test",
        approval=approval,  # type: ignore[arg-type]
        order=body or order_body(),
        facility=facility,
        received_at=received_at,
        # As the API starts every new order.
        patched_at_start=list(PATCHED_AT_START),
    )


@dataclass
class Recorder:
    """Stands in for the real activities under the same names, and remembers every call."""

    projections: list[Projection] = field(default_factory=list)
    jobs: list[PrintJobRequest] = field(default_factory=list)
    links: list[IssueLink] = field(default_factory=list)
    notices: list[HoldNotice] = field(default_factory=list)
    delays: list[DelayNotice] = field(default_factory=list)
    outcomes: list[FacilityOutcome] = field(default_factory=list)
    reject_with: str | None = None
    # The merchant's mail server refusing the personalization e-mail (a final refusal).
    refuse_links: bool = False
    # Set: each link's e-mail "goes out", then its activity waits for this before it reports.
    links_report_after: asyncio.Event | None = None
    # The facility refusing to resume a held job (a 4xx to the resume).
    refuse_resume: bool = False
    # Seconds a projection takes, by the type of its newest event (a slow database write).
    slow_projections: dict[str, float] = field(default_factory=dict)
    # Set: each print job "is made at the facility", then its activity waits for this before it
    # reports (an answer that is slow to come, or lost and retried).
    submit_answers_after: asyncio.Event | None = None
    # What the facility says when asked for a job's state, and who asked.
    job_state: PrintJobState | None = None
    job_queries: list[JobQuery] = field(default_factory=list)

    @activity.defn(name="project_order")
    async def project_order(self, projection: Projection) -> None:
        delay = self.slow_projections.get(projection.new_events[-1].type, 0.0)
        if delay:
            await asyncio.sleep(delay)
        self.projections.append(projection)

    @activity.defn(name="submit_print_job")
    async def submit_print_job(self, job: PrintJobRequest) -> PrintJobResult:
        if self.reject_with:
            raise ApplicationError(self.reject_with, type=FACILITY_REJECTED, non_retryable=True)
        self.jobs.append(job)
        if self.submit_answers_after is not None:
            await self.submit_answers_after.wait()
        return PrintJobResult(job_id=f"job-{len(self.jobs)}")

    @activity.defn(name="issue_personalization_link")
    async def issue_personalization_link(self, link: IssueLink) -> LinkIssued:
        if self.refuse_links:
            raise ApplicationError(
                "the mail server refused support@shop.test ([550])",
                type=MAIL_REJECTED,
                non_retryable=True,
            )
        self.links.append(link)
        if self.links_report_after is not None:
            await self.links_report_after.wait()
        return LinkIssued(link_id=f"lnk-{link.seq}", seq=link.seq, expires_at=link.expires_at)

    @activity.defn(name="send_hold_notice")
    async def send_hold_notice(self, notice: HoldNotice) -> None:
        self.notices.append(notice)

    @activity.defn(name="send_delay_notice")
    async def send_delay_notice(self, notice: DelayNotice) -> None:
        self.delays.append(notice)

    @activity.defn(name="notify_facility")
    async def notify_facility(self, outcome: FacilityOutcome) -> None:
        if self.refuse_resume and outcome.outcome == "resume":
            raise ApplicationError(
                "facility oslo refused resume (409)", type=FACILITY_REJECTED, non_retryable=True
            )
        self.outcomes.append(outcome)

    @activity.defn(name="fetch_print_job_state")
    async def fetch_print_job_state(self, query: JobQuery) -> PrintJobState:
        self.job_queries.append(query)
        return self.job_state or PrintJobState(job_id=query.job_id)

    def statuses(self) -> list[str]:
        return [p.given().status.value for p in self.projections]

    def events(self) -> list[str]:
        return [e.type for p in self.projections for e in p.new_events]

    def details(self, event: str) -> list[Any]:
        """The detail of each projected timeline entry of type ``event``, oldest first."""
        return [e.detail for p in self.projections for e in p.new_events if e.type == event]

    def activities(self) -> list[Any]:
        return [
            self.project_order,
            self.submit_print_job,
            self.issue_personalization_link,
            self.send_hold_notice,
            self.send_delay_notice,
            self.notify_facility,
            self.fetch_print_job_state,
        ]


@asynccontextmanager
async def order_worker(
    client: Client,
    recorder: Recorder,
    more: Sequence[Any] = (),
    *,
    cached: bool = True,
    task_queue: str | None = None,
) -> AsyncIterator[str]:
    """A worker of the order workflow with the recorder's activities, and ``more`` real ones
    (the preflight check, in its tests), on a new task queue unless given ``task_queue`` (the
    queue of a worker that stopped). Not ``cached``: it keeps no workflow, so every task
    replays the history so far, as the next worker does after one died at that step."""
    task_queue = task_queue or "tq-" + uuid.uuid4().hex
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[OrderWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=[*recorder.activities(), *more],
        **({} if cached else {"max_cached_workflows": 0}),
    ):
        yield task_queue


async def start(client: Client, task_queue: str, inp: OrderInput) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        OrderWorkflow.run, inp, id=inp.order_id, task_queue=task_queue
    )


async def replays(handle: WorkflowHandle[Any, Any]) -> None:
    """Today's code rebuilds the run from its history, as a worker that died at any step of it
    would have to: what the workflow did beside its waits was deterministic."""
    from tests.conftest import suite_converter

    replayer = Replayer(
        workflows=[OrderWorkflow], workflow_runner=WORKFLOW_RUNNER, data_converter=suite_converter()
    )
    await replayer.replay_workflow(await handle.fetch_history())


async def result_of(handle: WorkflowHandle[Any, Any]) -> Any:
    """``handle.result()``, waited for again while the run is still open.

    The time-skipping test server answers a wait for the closing event that lasted a minute of
    real time with an empty page and no next-page token (Temporal's server sends a token to
    wait on), which the SDK reads as a run that closed without a closing event and raises
    ``RuntimeError("No completion event found")``. A workflow that runs a day of activity
    retries in skipped time can take that minute on a loaded machine."""
    while True:
        try:
            return await handle.result()
        except RuntimeError as err:
            if "No completion event found" not in str(err):
                raise
            if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                raise


async def admitted(handle: WorkflowHandle[Any, Any], update_id: str) -> None:
    """Waits until the server has admitted the Update ``update_id``, sent while no worker runs:
    asking for its outcome then waits for a worker, instead of answering "not found"."""
    update = handle.get_update_handle(update_id)

    async def waiting() -> bool:
        try:
            await update.result(rpc_timeout=timedelta(seconds=0.5))
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            return True
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            return False
        raise AssertionError(f"update {update_id} ran: a worker was running")

    await apoll(f"update {update_id} to be admitted", waiting)


async def in_production(env: WorkflowEnvironment, task_queue: str) -> WorkflowHandle[Any, Any]:
    """A new order, past its cutoff and at the facility (``in_production``)."""
    handle = await start(env.client, task_queue, order_input(await env.get_current_time()))
    cutoff = (await state_of(handle)).cutoff_at
    assert cutoff is not None
    await sleep_until(env, cutoff + timedelta(seconds=1))
    await until_status(handle, Status.IN_PRODUCTION)
    return handle


async def facility_report(
    env: WorkflowEnvironment,
    handle: WorkflowHandle[Any, Any],
    kind: str,
    event_id: str | None = None,
    **extra: Any,
) -> None:
    """The facility's report of ``kind`` on the order, as the API signals it."""
    event = ProductionEventIn.model_validate(
        {"event_id": event_id or uuid.uuid4().hex, "order_id": handle.id, "type": kind, **extra}
    )
    await handle.signal(
        OrderWorkflow.facility_event,
        ProductionSignal(event=event, received_at=await env.get_current_time()),
    )


def answer_to_hold(answer: str, state: OrderState) -> tuple[Any, Any]:
    """The merchant's ``answer`` to the order's hold, as an Update and its argument: ``cancel``,
    ``resolve_hold`` (proceed as it is) or ``update_shipping_address`` (post code 0150)."""
    if answer == "cancel":
        return OrderWorkflow.cancel, CancelRequest(reason="no time")
    if answer == "resolve_hold":
        return OrderWorkflow.resolve_hold, HoldResolution(action="proceed")
    assert answer == "update_shipping_address", answer
    address = state.shipping_address.model_copy(update={"post_code": "0150"})
    return (
        OrderWorkflow.update_shipping_address,
        AddressChange(shipping_address=address, facility=OSLO),
    )


@asynccontextmanager
async def hold_answered_in_its_task(
    env: WorkflowEnvironment, recorder: Recorder, answer: str
) -> AsyncIterator[tuple[WorkflowHandle[Any, Any], UpdateAnswer]]:
    """An order in production whose facility reports a bad post code and whose merchant answers
    (``answer_to_hold``) while no worker runs. Once the server has admitted the Update, the next
    worker gets the report and the answer in one workflow task. Neither worker keeps a workflow:
    every task replays the history so far, as after a worker that died at the step before.
    Yields the order and the Update's answer, with the second worker running."""
    task_queue = "tq-" + uuid.uuid4().hex
    async with order_worker(env.client, recorder, task_queue=task_queue, cached=False):
        handle = await in_production(env, task_queue)
        state = await state_of(handle)
    issue = {"kind": "address_invalid", "description": "post code 0000 does not exist"}
    await facility_report(env, handle, "issue", issue=issue)
    update, argument = answer_to_hold(answer, state)
    answered = asyncio.create_task(handle.execute_update(update, argument, id="answer"))
    await admitted(handle, "answer")
    async with order_worker(env.client, recorder, task_queue=task_queue, cached=False):
        yield handle, await answered


async def state_of(handle: WorkflowHandle[Any, Any]) -> OrderState:
    return await handle.query(OrderWorkflow.order)


async def until(handle: WorkflowHandle[Any, Any], pred: Any, within: float = PATIENCE) -> Any:
    """The order's state (a query) once ``pred`` holds of it. Activities end in real time,
    whatever the time-skipping clock says: a busy machine needs more than the second a test
    sleeps past a cutoff for the submission to end."""

    async def state() -> Any:
        current = await state_of(handle)
        return current if pred(current) else None

    return await apoll("the order's workflow to get there", state, timeout=within)


async def until_status(handle: WorkflowHandle[Any, Any], status: Status) -> OrderState:
    """The order's state once it has ``status`` (``until``)."""
    result: OrderState = await until(handle, lambda s: s.status is status)
    return result


async def clear_of_a_cutoff(
    env: WorkflowEnvironment, facility: FacilityInfo = OSLO, room: timedelta = timedelta(minutes=10)
) -> datetime:
    """The test server's time, first moved past the facility's next cutoff if that is less than
    ``room`` away: the server starts at the wall clock, and a test that acts "five minutes before
    the cutoff" must not depend on when it runs."""
    now = await env.get_current_time()
    cutoff = next_cutoff(facility.schedule, facility.timezone, now)
    if cutoff - now < room:
        await env.sleep(cutoff - now + timedelta(seconds=1))
        now = await env.get_current_time()
    return now


async def sleep_until(env: WorkflowEnvironment, moment: datetime) -> None:
    now = await env.get_current_time()
    assert moment > now, f"{moment} is already past ({now})"
    await env.sleep(moment - now)


async def history_event_types(handle: WorkflowHandle[Any, Any]) -> list[int | str]:
    """The history's event types; a local activity's marker shows as "local_activity"."""
    types: list[int | str] = []
    async for e in handle.fetch_history_events():
        marker = e.marker_recorded_event_attributes.marker_name
        types.append("local_activity" if "local_activity" in marker else e.event_type)
    return types


def projected_after_acceptance(types: list[int | str], before: int) -> bool:
    """An Update's change went to a regular activity scheduled after its acceptance, and no
    local activity (which runs before its task is committed) ran after ``before`` events."""
    accepted = types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, before)
    scheduled = [
        i for i, t in enumerate(types) if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    return any(i > accepted for i in scheduled) and "local_activity" not in types[before:]


async def continued_as_new(handle: WorkflowHandle[Any, Any]) -> bool:
    """The workflow's latest run was started by a continue-as-new."""
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return bool(started.continued_execution_run_id)
