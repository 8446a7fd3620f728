"""OrderWorkflow: one durable workflow per order, from the API until the order is closed.

Where an order waits, and for what:
- ``pending_personalization``: for the customer. The merchant gets a link to forward
  ``personalization_email_delay`` after the order arrived, and a new one each time a link
  expires unused (the run continues as new every few links, so its history stays small);
- ``pending_approval``: for the merchant;
- ``scheduled``: for the production cutoff of its facility (a timer), while cancel and address
  changes are still accepted (after a change, in a new run when Temporal suggests one);
- at the cutoff the print job is submitted exactly once (the facility deduplicates on the order
  id) and the order is ``in_production``;
- then for the facility's reports (signals): printed, shipped (one or more packages),
  delivered, returned, or an issue that puts the order ``on_hold`` until the merchant answers,
  with reminders, and a cancel when nobody does. A report that comes while the submission's
  answer is still awaited waits for it; an order ``in_production`` or ``printed`` with no
  report for ``production_report_timeout`` alerts and asks the facility for the job's state.

Print files are checked as soon as the order arrives (and again when the merchant replaces
them), beside whatever it waits for (``workflows.preflight.FileChecks``): a file that fails puts
the order on hold with ``file_issue`` before the cutoff; at the cutoff an order whose files are
still being checked waits for the next one. The print job names each file's sha256.

An order with a ship-by promise that is in production (or printed) also wakes at ``ships_by``
(the same timer as the report timeout, whichever comes first): not shipped by then, it is
``late``, with a new estimate, a webhook and an e-mail to the merchant. Before its cutoff and
while it waits for its merchant or customer the promise waits too; personalization, approval,
a re-route or a hold's end move ``ships_by`` with the cutoff.

Every status change goes through ``_commit``, which records a timeline event, updates the search
attributes and projects the state into the read model. Nothing else writes state outward, and
nothing outward ever shows a change that this workflow's history does not hold (see ``_commit``).
Neither a projection nor an Update's answer repeats the order's items and metadata when the read
model already has them (``contracts.orders.Projection``, ``UpdateAnswer``), so however often an
order changes, its history grows by a few kilobytes a change. An Update answers with the
projection of its change as soon as it is scheduled; the API writes that projection itself
before it answers the merchant, so the merchant waits for one workflow task, not for the
projection's activity and a second task.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.search_attributes as sa
    from activities.delays import DelayActivities
    from activities.facility import FacilityActivities
    from activities.holds import HoldActivities
    from activities.order_projection import ProjectionActivities
    from activities.personalization import PersonalizationActivities
    from contracts.errors import FACILITY_REJECTED, MAIL_REJECTED
    from contracts.orders import (
        LARGE_PARTS,
        AddressChange,
        DelayNotice,
        FacilityOutcome,
        HoldNotice,
        HoldNoticeKind,
        IssueLink,
        JobQuery,
        LargePart,
        PersonalizationSubmission,
        PrintJobItem,
        PrintJobRequest,
        PrintJobState,
        ProductionSignal,
        Projection,
        UpdateAnswer,
        update_answer,
        without_large_parts,
    )
    from domain.facilities import facility_task_queue
    from domain.orders import (
        CLOSED,
        Action,
        EventType,
        FileState,
        Hold,
        HoldKind,
        ItemState,
        OrderInput,
        OrderState,
        PersonalizationStatus,
        RefusalCode,
        Shipment,
        Status,
        StoredCancel,
        StoredHoldResolution,
        StoredIssue,
        TimelineEvent,
        new_state,
        refusal,
        unchecked,
    )
    from domain.personalization import clean_values, validate_values
    from domain.preflight import FilePreflight, preflight_task_queue
    from domain.quotes import delivery_window, late_estimate, promise_dates
    from domain.schedule import describe_cutoff, next_cutoff
    from workflows.common import (
        MAIL_RETRY,
        SIDE_EFFECT_TIMEOUT,
        Projector,
        continue_as_new,
        rejection,
        show,
        wait_until,
    )
    from workflows.preflight import FileChecks

# Since this patch the API stores the order's first projection with its row; older runs
# project their creation themselves.
API_WRITES_CREATION = "api-writes-creation"
# Since this patch a change made by an Update is projected only once the Update is accepted and
# persisted, and projections run one at a time, in order (see ``_commit``).
PROJECT_AFTER_ACCEPT = "project-after-accept"
# Since this patch an Update answers with the projection of its change as soon as that
# projection's activity is scheduled, not once it has run; the API writes the same projection
# before it answers (``contracts.orders.UpdateAnswer``).
ANSWER_BEFORE_PROJECTION = "answer-before-projection"
# Since this patch the wait for the cutoff continues as new when Temporal suggests it, after
# any change that woke it: a scheduled order changed again and again keeps a small history.
CUTOFF_WAIT_CONTINUES_AS_NEW = "cutoff-wait-continues-as-new"
# Since this patch a facility report that comes before the job is known (the submission's
# answer lost, its retry waiting) waits for the job instead of being ignored.
REPORTS_WAIT_FOR_JOB = "reports-wait-for-job"
# Since this patch an order in production (or printed) with no report for
# ``production_report_timeout`` alerts and asks its facility for the job's state; a package
# already recorded (from that answer) is not added again by the facility's own report.
PRODUCTION_REPORT_TIMEOUT = "production-report-timeout"
# Since this patch a change that leaves every search attribute as it is (files checked, a new
# address at the same facility, a personalization link) upserts none: one event and one
# visibility write less.
SEARCH_ATTRIBUTES_WHEN_CHANGED = "search-attributes-when-changed"
# The patches above: the API starts each new order with them (``OrderInput.patched_at_start``),
# and its runs take them without recording a marker and its search attribute
# (``OrderWorkflow._patched``). A patch joins this list once every worker knows it: in the release
# that adds it when that release rolls the workers out before the API (this list's did), else
# one release later (docs/deploying.md).
PATCHED_AT_START = (
    API_WRITES_CREATION,
    PROJECT_AFTER_ACCEPT,
    ANSWER_BEFORE_PROJECTION,
    CUTOFF_WAIT_CONTINUES_AS_NEW,
    REPORTS_WAIT_FOR_JOB,
    PRODUCTION_REPORT_TIMEOUT,
    SEARCH_ATTRIBUTES_WHEN_CHANGED,
)
# Since this patch a hold on a job that ends in the very workflow task that placed it (the
# facility's report and the merchant's cancel or answer delivered together) still tells the
# facility how it ended; before it, the order went on (or closed) without telling it. Not yet
# in ``PATCHED_AT_START`` (docs/deploying.md); only such a run records its marker.
HOLD_ENDED_IN_ITS_TASK = "hold-ended-in-its-task"
LATE_METRIC = "printflow_orders_late"
# Stages a facility names in a job's state, in order (``GET /print-jobs/{job_id}/state``).
JOB_STAGES = ("printed", "shipped", "delivered")
OVERDUE_METRIC = "printflow_production_reports_overdue"
# A new run every few links keeps the history of an order that waits for months small.
LINKS_PER_RUN = 10
SEEN_EVENTS_KEPT = 200
# Packages of one order; a facility reporting more is ignored (and the API caps its reports).
MAX_SHIPMENTS = 20
SUBMIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,  # 5xx and timeouts: for as long as it takes
    non_retryable_error_types=[FACILITY_REJECTED],
)
# Facility notices: 5xx, 408, 429 and time-outs retry; another 4xx is the facility refusing.
NOTIFY_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=5), non_retryable_error_types=[FACILITY_REJECTED]
)


def _search_attribute_pairs(state: OrderState) -> list[sa.Pair]:
    return sa.pairs(
        SearchAttributePair(sa.ORDER_STATUS, state.status.value),
        SearchAttributePair(sa.MERCHANT_ID, state.merchant_id),
        SearchAttributePair(sa.ORDER_REFERENCE, state.order_reference_id),
        SearchAttributePair(sa.FACILITY, state.facility.id),
        sa.maybe(sa.CUTOFF_AT, state.cutoff_at),
        # Only once late: orders never late keep the attributes they always had.
        sa.maybe(sa.LATE, True if state.late else None),
    )


def search_attributes_for(state: OrderState) -> TypedSearchAttributes:
    return sa.typed(_search_attribute_pairs(state))


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    @workflow.init
    def __init__(self, inp: OrderInput) -> None:
        self._input = inp
        self._state = inp.state or new_state(inp)
        self._projector = Projector(
            self._state,
            build=self._projection,
            activity=ProjectionActivities.project_order,
            search_attributes=self._search_attribute_updates,
            details=self._waiting_text,
            log=_log_line,
        )
        # Bumped by every change that can move a deadline; timed waits restart on it.
        self._generation = 0
        self._links_this_run = 0
        # The link whose e-mail is on its way: its customer may answer before the activity ends.
        self._issuing_seq: int | None = None
        # Facility reports that came before the job was known, waiting for it (their ids).
        self._reports_waiting: set[str] = set()
        # True from a print job's submission until its job is known (or the order holds).
        self._submitting = False
        # While a hold on a job the facility holds is open, or ended but not yet told to the
        # facility: the status the order resumes to (``_tell_facility``).
        hold, job = self._state.hold, self._state.job_id
        self._job_hold = hold.resume_to if hold is not None and job is not None else None
        # The large parts as the read model holds them: a run continued from another starts
        # with them (that run's projections were all written before it continued).
        self._projected_items: list[ItemState] | None = None
        self._projected_metadata = inp.state is not None
        if inp.state is not None:
            self._projected_items = [i.model_copy(deep=True) for i in inp.state.items]
        # The projection each running Update's change went out with, by Update id (``_answer``).
        self._answers: dict[str, Projection] = {}
        self._done = False
        base = inp.facility_queue_base
        self._checks = FileChecks(
            self._state,
            task_queue=None if base is None else preflight_task_queue(base),
            give_up=inp.preflight_give_up,
            on_settled=self._files_settled,
        )

    def _search_attribute_updates(self, state: OrderState) -> list[sa.Update] | None:
        """The search attributes a change sets; None when it leaves them all as they are."""
        pairs = _search_attribute_pairs(state)
        current = workflow.info().typed_search_attributes
        if all(current.get(p.key) == p.value for p in pairs) and self._patched(
            SEARCH_ATTRIBUTES_WHEN_CHANGED
        ):
            return None
        return sa.updates(pairs)

    def _patched(self, patch: str) -> bool:
        """``workflow.patched(patch)``, except for an order started with the patch
        (``OrderInput.patched_at_start``): True, with no marker recorded. A worker older than
        that field may have run a task of such an order, and recorded the marker; replaying that
        task meets it again (while replaying, ``patched`` only matches a marker the history
        holds, and records none)."""
        if patch not in self._input.patched_at_start:
            return workflow.patched(patch)
        if workflow.unsafe.is_replaying():
            workflow.patched(patch)
        return True

    # ------------------------------------------------------------------ the order's life

    @workflow.run
    async def run(self, inp: OrderInput) -> OrderState:
        if inp.state is None:
            state = self._state
            workflow.logger.info(
                "order %s: created (status %s, facility %s)",
                state.order_id,
                state.status.value,
                state.facility.id,
            )
            if self._patched(API_WRITES_CREATION):
                # The API's row holds the items and metadata as ``new_state`` made them.
                self._projected_items = [i.model_copy(deep=True) for i in state.items]
                self._projected_metadata = True
            else:
                # Orders created before the API wrote their first projection itself.
                await self._commit(EventType.CREATED, {"facility": state.facility.id})
        if inp.preflight == "on":
            self._checks.start()

        while True:
            if self._job_hold_untold():
                await self._end_job_hold_untold()
            if self._done or self._state.status in CLOSED:
                break
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()
            status = self._state.status
            if status is Status.PENDING_PERSONALIZATION:
                await self._await_personalization()
            elif status is Status.SCHEDULED:
                await self._wait_for_cutoff()
            elif status is Status.ON_HOLD:
                await self._await_hold_answer()
            elif status is Status.SHIPPED:
                await self._await_delivery()
            elif status in _REPORTING and self._patched(PRODUCTION_REPORT_TIMEOUT):
                await self._await_production_report()
            else:
                show(self._waiting_text(self._state))
                await workflow.wait_condition(
                    lambda s=status: self._state.status is not s or self._job_hold_untold()  # type: ignore[misc]
                )

        # The last projection may still be running: an Update answered before its write.
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and not self._projector.pending
        )
        return self._state

    async def _await_personalization(self) -> None:
        """Sends the merchant a link to forward, and a new one whenever the last expired."""
        state, inp = self._state, self._input
        while state.status is Status.PENDING_PERSONALIZATION:
            first = state.link_expires_at is None
            due = state.link_expires_at or state.created_at + inp.personalization_email_delay
            if due > workflow.now():
                if first:
                    text = f"waiting to e-mail the personalization link at {_hm(due)}"
                else:
                    text = f"waiting for personalization; link {state.link_seq} expires {_hm(due)}"
                if await wait_until(due, text, lambda: state.status is not _PERSONALIZING):
                    return
            if self._links_this_run >= LINKS_PER_RUN:
                await self._continue_as_new()
            seq = state.link_seq + 1
            link = IssueLink(
                order_id=state.order_id,
                merchant_id=state.merchant_id,
                support_email=inp.support_email,
                order_reference_id=state.order_reference_id,
                seq=seq,
                expires_at=workflow.now() + inp.personalization_link_ttl,
                items=[
                    i
                    for i in state.items
                    if i.personalization_status is PersonalizationStatus.PENDING
                ],
                support_id=state.support_id,
            )
            self._issuing_seq = seq
            try:
                issued = await workflow.execute_activity_method(
                    PersonalizationActivities.issue_personalization_link,
                    link,
                    start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
                    retry_policy=MAIL_RETRY,
                    summary=f"personalization link {seq} to the merchant",
                )
            except ActivityError as err:
                self._issuing_seq = None
                reason = rejection(err, MAIL_REJECTED)
                if reason is None:
                    raise
                # Retrying cannot help: the merchant answers the hold (proceed sends a new link).
                await self._hold(HoldKind.NOTIFICATION_FAILED, reason, resume_to=_PERSONALIZING)
                return
            self._links_this_run += 1
            self._issuing_seq = None
            state.link_seq, state.link_id = issued.seq, issued.link_id
            state.link_expires_at = issued.expires_at
            await self._commit(
                EventType.PERSONALIZATION_LINK_ISSUED,
                {"link": issued.seq, "expires_at": issued.expires_at.isoformat()},
            )

    async def _wait_for_cutoff(self) -> None:
        while self._state.status is Status.SCHEDULED:
            cutoff = self._state.cutoff_at
            assert cutoff is not None
            if cutoff > workflow.now():
                generation = self._generation
                text = f"waiting for {describe_cutoff(self._state.facility, cutoff)}"
                if await wait_until(
                    cutoff,
                    text,
                    lambda g=generation: (
                        self._generation != g  # type: ignore[misc]
                        or self._state.status is not Status.SCHEDULED
                    ),
                    details=f"{text}; cancel and address changes accepted until then",
                ):
                    # Canceled, re-addressed or re-routed: look again, in a new run when the
                    # changes made this one's history long.
                    if workflow.info().is_continue_as_new_suggested() and self._patched(
                        CUTOFF_WAIT_CONTINUES_AS_NEW
                    ):
                        await self._continue_as_new()
                    continue
            if self._checks.pending:
                await self._postpone_cutoff()
                continue
            if self._checks.blocking():
                problems = self._checks.problems()
                await self._hold(HoldKind.FILE_ISSUE, problems, resume_to=Status.SCHEDULED)
                return
            await self._submit()
            return

    async def _postpone_cutoff(self) -> None:
        """The cutoff came while a file was still being checked: the order goes with the
        next one (and stays editable until then), never with a file nobody checked."""
        state = self._state
        state.cutoff_at = self._next_cutoff(workflow.now())
        detail: dict[str, Any] = {
            "cutoff_at": state.cutoff_at.isoformat(),
            "reason": "print files were still being checked at the cutoff",
        }
        self._move_promise(state.cutoff_at, detail)
        await self._commit(EventType.CUTOFF_POSTPONED, detail)

    async def _files_settled(self) -> None:
        """Every file's check has ended: the timeline says they passed, or the order holds for
        the merchant while it can still be changed for free."""
        state = self._state
        if state.status in CLOSED:
            return
        blocking = self._checks.blocking()
        if not blocking:
            files = sum(len(i.files) for i in state.items)
            await self._commit(EventType.FILES_CHECKED, {"files": files})
        elif state.status in _BEFORE_PRODUCTION:
            await self._hold(HoldKind.FILE_ISSUE, self._checks.problems(), resume_to=state.status)
        # Otherwise the order is on hold already, or resuming a job: the hold's end or the
        # resume (``_files_ready``) looks at the files before anything reaches the facility.

    async def _files_ready(self) -> bool:
        """Waits for the files' checks; False when one failed and the order is on hold again."""
        await workflow.wait_condition(lambda: not self._checks.pending)
        if not self._checks.blocking():
            return True
        state = self._state
        await self._hold(HoldKind.FILE_ISSUE, self._checks.problems(), resume_to=state.status)
        return False

    def _print_job(self) -> PrintJobRequest:
        """The job as the facility must print it now: the current address, files and values."""
        state = self._state
        return PrintJobRequest(
            order_id=state.order_id,
            order_reference_id=state.order_reference_id,
            facility_id=state.facility.id,
            items=[
                PrintJobItem(
                    item_reference_id=i.item_reference_id,
                    product_uid=i.product_uid,
                    quantity=i.quantity,
                    files=[_job_file(f) for f in i.files],
                    personalization=i.personalization_values,
                )
                for i in state.items
            ],
            shipping_address=state.shipping_address,
        )

    async def _submit(self) -> None:
        state = self._state
        show(f"submitting the print job to {state.facility.name}")
        self._submitting = True
        try:
            result = await workflow.execute_activity_method(
                FacilityActivities.submit_print_job,
                self._print_job(),
                task_queue=self._facility_queue(),
                start_to_close_timeout=self._input.print_submit_timeout,
                retry_policy=SUBMIT_RETRY,
                summary=f"print job to {state.facility.name}",
            )
        except ActivityError as err:
            reason = rejection(err, FACILITY_REJECTED)
            if reason is None:
                raise
            await self._hold(HoldKind.FACILITY_REJECTED, reason, resume_to=Status.SCHEDULED)
            self._submitting = False
            return
        state.job_id = result.job_id
        await self._commit(EventType.IN_PRODUCTION, {"job_id": result.job_id}, Status.IN_PRODUCTION)
        self._submitting = False

    async def _await_hold_answer(self) -> None:
        """Tells the merchant, reminds them, and cancels when nobody answers in time."""
        state, inp = self._state, self._input
        hold = state.hold
        assert hold is not None and hold.respond_by is not None
        if hold.reminders_sent == 0:
            await self._send_hold_notice("hold")
        while state.status is Status.ON_HOLD:
            reminder_at = hold.since + inp.hold_reminder_interval * (hold.reminders_sent + 1)
            wake = min(reminder_at, hold.respond_by)
            text = f"on hold ({hold.kind}); merchant must answer by {_hm(hold.respond_by)}"
            if await wait_until(wake, text, lambda: state.status is not Status.ON_HOLD):
                break
            if workflow.now() >= hold.respond_by:
                state.cancel_reason = f"no answer to the hold ({hold.kind}) in time"
                await self._commit(
                    EventType.CANCELED, {"reason": state.cancel_reason}, Status.CANCELED
                )
                await self._send_hold_notice("canceled")
                break
            hold.reminders_sent += 1
            await self._send_hold_notice("reminder")
            await self._commit(EventType.HOLD_REMINDER_SENT, {"reminder": hold.reminders_sent})
        if state.job_id is not None:
            await self._end_job_hold(hold.resume_to)

    def _job_hold_untold(self) -> bool:
        """A hold on a job ended before the order's main loop waited on it: the merchant's
        cancel or answer came in the workflow task that brought the facility's report."""
        return self._job_hold is not None and self._state.status is not Status.ON_HOLD

    async def _end_job_hold_untold(self) -> None:
        """Does for such a hold what ``_await_hold_answer`` does when the merchant answers."""
        resume_to = self._job_hold
        assert resume_to is not None
        if not self._patched(HOLD_ENDED_IN_ITS_TASK):
            self._job_hold = None  # a history from before: it went on without telling
            return
        await self._end_job_hold(resume_to)

    async def _end_job_hold(self, resume_to: Status) -> None:
        """Tells the facility how the hold on its job ended, once the files are ready for a
        resume (if one failed its check the order holds again, and tells the facility later)."""
        if self._state.status is not Status.CANCELED and not await self._files_ready():
            return
        await self._tell_facility(resume_to=resume_to)

    async def _tell_facility(self, resume_to: Status) -> None:
        """How a hold on a job ended. A resume carries the job as it is now, so the address or
        files fixed during the hold reach the facility before it prints again."""
        state = self._state
        assert state.job_id is not None
        self._job_hold = None
        canceled = state.status is Status.CANCELED
        outcome = FacilityOutcome(
            facility_id=state.facility.id,
            job_id=state.job_id,
            outcome="cancel" if canceled else "resume",
            job=None if canceled else self._print_job(),
        )
        try:
            await workflow.execute_activity_method(
                FacilityActivities.notify_facility,
                outcome,
                task_queue=self._facility_queue(),
                start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"tell {state.facility.name}: {outcome.outcome} job {state.job_id}",
            )
        except ActivityError as err:
            reason = rejection(err, FACILITY_REJECTED)
            if reason is None:
                raise
            if canceled:
                workflow.logger.warning(
                    "facility refused to cancel job %s: %s", state.job_id, reason
                )
                return
            # The facility will not resume the job as it is now: back to the merchant.
            await self._hold(HoldKind.FACILITY_REJECTED, reason, resume_to=resume_to)

    async def _send_hold_notice(self, notice: HoldNoticeKind) -> None:
        state = self._state
        hold = state.hold
        assert hold is not None
        try:
            await workflow.execute_activity_method(
                HoldActivities.send_hold_notice,
                HoldNotice(
                    order_id=state.order_id,
                    merchant_id=state.merchant_id,
                    order_reference_id=state.order_reference_id,
                    support_email=self._input.support_email,
                    kind=hold.kind,
                    description=hold.description,
                    notice=notice,
                    reminder_number=hold.reminders_sent,
                    respond_by=hold.respond_by,
                    support_id=state.support_id,
                ),
                start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
                retry_policy=MAIL_RETRY,
                summary=f"hold e-mail ({notice}) to the merchant",
            )
        except ActivityError as err:
            reason = rejection(err, MAIL_REJECTED)
            if reason is None:
                raise
            # The order stays on hold; the merchant still sees it in the API and on webhooks.
            await self._commit(EventType.NOTIFICATION_FAILED, {"notice": notice, "reason": reason})

    async def _await_delivery(self) -> None:
        """Shipped orders close on delivery, or quietly once delivery is long overdue."""
        state = self._state
        while state.status is Status.SHIPPED:
            assert state.last_shipped_at is not None
            deadline = state.last_shipped_at + self._input.delivery_timeout
            generation = self._generation
            if await wait_until(
                deadline,
                f"shipped; closes by {_hm(deadline)} if no delivery is reported",
                lambda g=generation: (
                    self._generation != g  # type: ignore[misc]
                    or state.status is not Status.SHIPPED
                ),
            ):
                continue
            await self._commit(EventType.CLOSED, {"reason": "no delivery reported"})
            self._done = True
            return

    # ------------------------------------------------------------------ merchant's updates

    @workflow.update
    async def cancel(self, request: StoredCancel) -> UpdateAnswer:
        if self._projector.applied():
            return self._answer()  # a retry of the same cancel: answered as it was
        self._state.cancel_reason = request.reason
        self._state.cancel_reason_code = request.reason_code
        detail: dict[str, Any] = {"reason": request.reason}
        if request.reason_code is not None:
            # Only when given: cancels without a code keep the timeline entry they always had.
            detail["reason_code"] = request.reason_code.value
        await self._commit(EventType.CANCELED, detail, Status.CANCELED)
        return self._answer()

    @cancel.validator
    def _validate_cancel(self, request: StoredCancel) -> None:
        if not self._projector.applied():
            self._refuse_unless(Action.CANCEL)

    @workflow.update
    async def update_shipping_address(self, change: AddressChange) -> UpdateAnswer:
        state = self._state
        if self._projector.applied():
            return self._answer()
        detail: dict[str, Any] = {"country": change.shipping_address.country}
        state.shipping_address = change.shipping_address
        if change.facility.id != state.facility.id and state.job_id is None:
            detail["facility"] = change.facility.id
            state.facility = change.facility
            if state.status is Status.SCHEDULED:
                state.cutoff_at = self._next_cutoff(workflow.now())
                detail["cutoff_at"] = state.cutoff_at.isoformat()
        self._readdress_promise(change, detail)
        self._generation += 1
        resume = None
        if state.status is Status.ON_HOLD and state.hold is not None:
            resume = self._resume_from_hold(detail)
        await self._commit(EventType.SHIPPING_ADDRESS_UPDATED, detail, resume)
        return self._answer()

    @update_shipping_address.validator
    def _validate_address(self, change: AddressChange) -> None:
        if not self._projector.applied():
            self._refuse_unless(Action.UPDATE_ADDRESS)

    @workflow.update
    async def approve(self) -> UpdateAnswer:
        if self._projector.applied():
            return self._answer()
        skipped = []
        for item in self._state.items:
            if item.personalization_status is PersonalizationStatus.PENDING:
                item.personalization_status = PersonalizationStatus.SKIPPED
                skipped.append(item.item_reference_id)
        self._state.cutoff_at = self._next_cutoff(workflow.now())
        detail: dict[str, Any] = {"cutoff_at": self._state.cutoff_at.isoformat()}
        self._move_promise(self._state.cutoff_at, detail)
        if skipped:
            detail["personalization_skipped"] = skipped
        await self._commit(EventType.APPROVED, detail, Status.SCHEDULED)
        return self._answer()

    @approve.validator
    def _validate_approve(self) -> None:
        if not self._projector.applied():
            self._refuse_unless(Action.APPROVE)

    @workflow.update
    async def resolve_hold(self, resolution: StoredHoldResolution) -> UpdateAnswer:
        state = self._state
        if self._projector.applied():
            return self._answer()
        detail: dict[str, Any] = {"action": resolution.action}
        if resolution.files:
            for item in state.items:
                if item.item_reference_id in resolution.files:
                    files = resolution.files[item.item_reference_id]
                    item.files = unchecked(files, self._input.preflight)
            detail["items"] = sorted(resolution.files)
        elif resolution.action == "proceed" and self._checks.blocking():
            detail["files_printed_as_they_are"] = [
                f"{t.item.item_reference_id} {t.label}" for t in self._checks.blocking()
            ]
            self._checks.proceed()
        await self._commit(EventType.HOLD_RESOLVED, detail, self._resume_from_hold(detail))
        self._checks.start()
        return self._answer()

    @resolve_hold.validator
    def _validate_resolve_hold(self, resolution: StoredHoldResolution) -> None:
        state = self._state
        if self._projector.applied():
            return
        if state.status is not Status.ON_HOLD:
            raise ApplicationError(
                f"the order is {state.status.value}, not on hold",
                type=RefusalCode.ORDER_NOT_ON_HOLD,
            )
        unknown = set(resolution.files or {}) - {i.item_reference_id for i in state.items}
        if unknown:
            raise ApplicationError(
                f"no such items in this order: {', '.join(sorted(unknown))}",
                type=RefusalCode.UNKNOWN_ITEMS,
            )

    @workflow.update
    async def complete_personalization(self, submission: PersonalizationSubmission) -> UpdateAnswer:
        state = self._state
        if self._projector.applied():
            return self._answer()
        if submission.link_id != state.link_id:
            # The link being e-mailed (see the validator): it is ours once its activity ends.
            await workflow.wait_condition(lambda: self._issuing_seq != submission.link_seq)
            self._validate_personalization(submission)
        cleaned = clean_values(state.items, submission.values)
        for item in state.items:
            if item.personalization_status is PersonalizationStatus.PENDING:
                item.personalization_values = cleaned.get(item.item_reference_id, {})
                item.personalization_status = PersonalizationStatus.COMPLETED
                if self._input.preflight == "on":
                    item.image_checks = _images_to_check(item)
        detail: dict[str, Any] = {"items": sorted(cleaned)}
        if state.approval == "manual":
            await self._commit(EventType.PERSONALIZATION_COMPLETED, detail, Status.PENDING_APPROVAL)
        else:
            state.cutoff_at = self._next_cutoff(workflow.now())
            detail["cutoff_at"] = state.cutoff_at.isoformat()
            self._move_promise(state.cutoff_at, detail)
            await self._commit(EventType.PERSONALIZATION_COMPLETED, detail, Status.SCHEDULED)
        self._checks.start()
        return self._answer()

    @complete_personalization.validator
    def _validate_personalization(self, submission: PersonalizationSubmission) -> None:
        state = self._state
        if self._projector.applied():
            return
        if state.status is Status.CANCELED:
            raise ApplicationError("the order was canceled", type=RefusalCode.ORDER_CANCELED)
        if state.status is not Status.PENDING_PERSONALIZATION:
            raise ApplicationError(
                "the order is already personalized", type=RefusalCode.ALREADY_PERSONALIZED
            )
        # A customer can open the e-mail before the activity that sent it has reported back:
        # the link then is the one being issued (the API found it, newest of its order).
        being_issued = submission.link_seq is not None and submission.link_seq == self._issuing_seq
        if submission.link_id != state.link_id and not being_issued:
            raise ApplicationError(
                "a newer link replaced this one", type=RefusalCode.LINK_SUPERSEDED
            )
        errors = validate_values(state.items, submission.values)
        if errors:
            raise ApplicationError(
                "some personalization values are not valid",
                errors,
                type=RefusalCode.INVALID_PERSONALIZATION,
            )

    # ------------------------------------------------------------------ the facility's reports

    @workflow.signal
    async def facility_event(self, signal: ProductionSignal) -> None:
        state, event = self._state, signal.event
        if event.event_id in state.seen_event_ids or event.event_id in self._reports_waiting:
            return  # the facility repeated itself
        if self._submitting and self._patched(REPORTS_WAIT_FOR_JOB):
            # The job was made but its submission's answer is still awaited: this report is
            # about it. It waits (unseen, so a repeat waits with it) until the submission ends;
            # reports that waited are applied in the order they came. Only while a submission
            # runs: a report waiting in any other state could hold up a continue-as-new, which
            # waits for every handler to finish.
            self._reports_waiting.add(event.event_id)
            await workflow.wait_condition(lambda: not self._submitting)
            self._reports_waiting.discard(event.event_id)
        state.seen_event_ids = [*state.seen_event_ids, event.event_id][-SEEN_EVENTS_KEPT:]
        tracking = event.tracking
        await self._apply_report(
            event.event_id,
            event.type,
            signal.received_at,
            tracking=Shipment(
                carrier=tracking.carrier,
                tracking_code=tracking.tracking_code,
                tracking_url=str(tracking.tracking_url) if tracking.tracking_url else None,
                shipped_at=signal.received_at,
            )
            if tracking
            else None,
            issue=event.issue,
        )

    async def _apply_report(
        self,
        event_id: str,
        kind: str,
        received_at: datetime,
        *,
        tracking: Shipment | None = None,
        issue: StoredIssue | None = None,
        quiet: bool = False,
    ) -> bool:
        """What a report of the facility does to the order; False if it does not fit (an
        ``event_ignored`` entry, unless ``quiet``)."""
        state = self._state
        self._generation += 1
        status = state.status
        if kind == "printed" and status is Status.IN_PRODUCTION:
            await self._commit(EventType.PRINTED, {"event_id": event_id}, Status.PRINTED)
        elif (
            kind == "shipped"
            and tracking
            and status in _SHIPPABLE
            and len(state.shipments) < MAX_SHIPMENTS
            and not (_recorded(state, tracking) and self._patched(PRODUCTION_REPORT_TIMEOUT))
        ):
            kept = None if state.ships_by is None else received_at <= state.ships_by
            shipment = tracking.model_copy(update={"shipped_at": received_at, "promise_kept": kept})
            state.shipments = [*state.shipments, shipment]
            state.last_shipped_at = received_at
            await self._commit(
                EventType.SHIPMENT,
                shipment.model_dump(mode="json", exclude={"shipped_at"}),
                Status.SHIPPED,
            )
        elif kind == "delivered" and status is Status.SHIPPED:
            await self._commit(EventType.DELIVERED, {"event_id": event_id}, Status.DELIVERED)
        elif kind == "returned" and status in (Status.SHIPPED, Status.DELIVERED):
            await self._commit(EventType.RETURNED, {"event_id": event_id}, Status.RETURNED)
        elif kind == "issue" and issue and status in _HOLDABLE:
            await self._hold(HoldKind(issue.kind), issue.description, resume_to=status)
        elif quiet:
            return False
        else:
            await self._commit(
                EventType.EVENT_IGNORED,
                {
                    "event_id": event_id,
                    "event": kind,
                    "why": f"a {kind} report does not fit an order that is {status.value}",
                },
            )
            return False
        return True

    async def _await_production_report(self) -> None:
        """In production or printed: a report moves the order on. With none for
        ``production_report_timeout`` the order alerts and asks the facility, and again after
        each further timeout while the facility says nothing new. The same wait ends at
        ``ships_by`` when that comes first: not shipped by then, the order is late."""
        state, timeout = self._state, self._input.production_report_timeout
        status = state.status
        asks_at = workflow.now() + timeout
        while state.status is status and not self._job_hold_untold():
            generation = self._generation
            due = self._promise_due()
            if due is not None and due >= asks_at:
                due = None  # the report timeout comes first
            if due is not None:
                wake, summary = due, f"ship-by promise: shipped by {_hm(due)}"
            else:
                wake, summary = asks_at, f"no report by {_hm(asks_at)}: ask {state.facility.name}"
            if await wait_until(
                wake,
                summary,
                lambda g=generation: self._generation != g or state.status is not status,  # type: ignore[misc]
                details=self._waiting_text(state),
            ):
                asks_at = workflow.now() + timeout  # a report came: the clock starts again
                continue
            if due is not None:
                await self._mark_late(due)
                continue
            await self._ask_facility(silent_for=timeout)
            asks_at = workflow.now() + timeout

    async def _ask_facility(self, *, silent_for: timedelta) -> None:
        """Alerts (log, metric) and applies what the facility says of the job now."""
        state = self._state
        assert state.job_id is not None
        workflow.logger.warning(
            "order %s: no report from facility %s for %s since it was %s; asking for job %s",
            state.order_id,
            state.facility.id,
            silent_for,
            state.status.value,
            state.job_id,
        )
        workflow.metric_meter().create_counter(
            OVERDUE_METRIC, "orders whose facility reported nothing for production_report_timeout"
        ).add(1, {"facility": state.facility.id})
        try:
            job: PrintJobState = await workflow.execute_activity_method(
                FacilityActivities.fetch_print_job_state,
                JobQuery(facility_id=state.facility.id, job_id=state.job_id),
                task_queue=self._facility_queue(),
                start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
                schedule_to_close_timeout=silent_for,
                retry_policy=NOTIFY_RETRY,
                summary=f"ask {state.facility.name} for job {state.job_id}",
            )
        except ActivityError as err:
            cause = str(err.cause or err)
            workflow.logger.warning(
                "order %s: facility %s did not tell job %s's state: %s",
                state.order_id,
                state.facility.id,
                state.job_id,
                cause,
            )
            return
        reached = JOB_STAGES.index(job.stage) + 1 if job.stage in JOB_STAGES else 0
        tracking = job.tracking
        now = workflow.now()
        applied = []
        for kind in JOB_STAGES[:reached]:
            shipment = None
            if kind == "shipped" and tracking is not None:
                shipment = Shipment(
                    carrier=tracking.carrier,
                    tracking_code=tracking.tracking_code,
                    tracking_url=tracking.tracking_url,
                    shipped_at=now,
                )
            event_id = f"{state.job_id}:{kind}"
            if await self._apply_report(event_id, kind, now, tracking=shipment, quiet=True):
                applied.append(kind)
        workflow.logger.warning(
            "order %s: facility %s says job %s is %s (stage %s); applied: %s",
            state.order_id,
            state.facility.id,
            state.job_id,
            job.status,
            job.stage,
            ", ".join(applied) or "nothing new",
        )

    @workflow.query
    def order(self) -> OrderState:
        return self._state

    # ------------------------------------------------------------------ the one place

    async def _commit(
        self,
        event: EventType,
        detail: dict[str, Any] | str | None = None,
        status: Status | None = None,
    ) -> None:
        """Records a change: timeline, search attributes, read model. The only writer.

        The projector (``workflows.common.Projector``) projects a batch holding an Update's
        change by a regular activity, once the Update's acceptance is in the history, and one
        projection at a time. Histories written before ``PROJECT_AFTER_ACCEPT`` projected such
        a change at once, by a local activity; they replay as they were written.
        """
        state = self._state
        changed = status is not None and status is not state.status
        if status is not None:
            state.status = status
        state.event_seq += 1
        projector = self._projector
        projector.record(
            TimelineEvent(
                seq=state.event_seq,
                at=workflow.now(),
                type=event,
                detail=detail,
                status=state.status.value if changed else None,
            )
        )
        contended = projector.contended
        if (contended or projector.update_in_batch) and not self._patched(PROJECT_AFTER_ACCEPT):
            # Replaying a history written before the patch: each change projected at once.
            await projector.project(local=True)
            return
        update = workflow.current_update_info()
        if update is not None and self._patched(ANSWER_BEFORE_PROJECTION):
            # The Update answers with this projection; the API writes it (``UpdateAnswer``).
            projection = await projector.project_answer()
            self._answers.pop(update.id, None)
            if projection is None:
                return  # an earlier projection carried the change, and has been written
            if len(projection.unchanged) == len(LARGE_PARTS):
                self._answers[update.id] = projection
            else:
                # It carries the items (or the metadata): answered with, they would be in the
                # history twice. The Update answers once it is written, as before the patch.
                await projector.written()
            return
        await projector.project_pending()

    def _answer(self) -> UpdateAnswer:
        """What the Update being handled answers: the projection its change went out with (the
        last, if it made several), or, when an earlier projection carried the change (written
        already) or it made none (a retry, answered as it was), the state."""
        update = workflow.current_update_info()
        projection = self._answers.pop(update.id, None) if update is not None else None
        return update_answer(self._state, projection)

    def _projection(self, events: list[TimelineEvent]) -> Projection:
        """The state without the large parts the read model already has as they are (see
        ``Projection``): the items unless they changed since they were last projected, the
        metadata (which never changes) after a first run's first projection."""
        state, unchanged = self._state, list[LargePart]()
        if self._projected_items is not None and state.items == self._projected_items:
            unchanged.append("items")
        else:
            self._projected_items = [i.model_copy(deep=True) for i in state.items]
        if self._projected_metadata:
            unchanged.append("metadata")
        self._projected_metadata = True
        slim = without_large_parts(state, unchanged).model_copy(deep=True)
        return Projection(slim=slim, unchanged=unchanged, new_events=events)

    async def _continue_as_new(self) -> None:
        """A new run with the state so far: long waits and many shipments keep histories small."""
        await continue_as_new(self._input, self._projector)

    # ------------------------------------------------------------------ helpers

    async def _hold(self, kind: HoldKind, description: str, resume_to: Status) -> None:
        """Puts the order on hold for the merchant; it goes back to ``resume_to`` when answered.

        A facility refusing the job is recorded as ``print_job_rejected``; any other hold as
        ``on_hold``.
        """
        now = workflow.now()
        self._state.hold = Hold(
            kind=kind,
            description=description,
            since=now,
            respond_by=now + self._input.hold_timeout,
            resume_to=resume_to,
        )
        if self._state.job_id is not None:
            self._job_hold = resume_to
        if kind is HoldKind.FACILITY_REJECTED:
            await self._commit(
                EventType.PRINT_JOB_REJECTED, {"reason": description}, Status.ON_HOLD
            )
        else:
            detail = {"kind": kind.value, "description": description}
            await self._commit(EventType.ON_HOLD, detail, Status.ON_HOLD)

    def _resume_from_hold(self, detail: dict[str, Any]) -> Status:
        """Ends the hold; production starts again now, so the promise counts from now."""
        state = self._state
        assert state.hold is not None
        resume_to, kind = state.hold.resume_to, state.hold.kind
        state.hold = None
        if resume_to is Status.SCHEDULED and state.job_id is None and kind is HoldKind.FILE_ISSUE:
            # Files fixed (or accepted) before the cutoff: the next cutoff, as any order.
            state.cutoff_at = self._next_cutoff(workflow.now())
        elif resume_to is Status.SCHEDULED:
            # A job the facility refused goes again at once, with whatever was fixed.
            state.cutoff_at = workflow.now()
        self._move_promise(workflow.now(), detail)
        return resume_to

    # ------------------------------------------------------------------ the ship-by promise

    def _move_promise(self, start: datetime, detail: dict[str, Any]) -> None:
        """Production now starts at ``start`` (a new cutoff, a hold's end): ``ships_by`` and the
        delivery window follow, and ``detail`` says so."""
        state = self._state
        if state.promise is None or state.ships_by is None:
            return
        ships_by, window = promise_dates(state.facility.timezone, state.promise, start)
        if ships_by != state.ships_by:
            detail["ships_by"] = ships_by.isoformat()
        state.ships_by, state.delivery_estimate = ships_by, window

    def _readdress_promise(self, change: AddressChange, detail: dict[str, Any]) -> None:
        """The promise from the new address: the facility's (re-routed or the same one), or,
        when the job stays where it is, the same facility with the new country's transit."""
        state = self._state
        if change.promise is None or state.promise is None or state.ships_by is None:
            return
        if change.facility.id == state.facility.id:
            state.promise = change.promise
        else:
            state.promise = state.promise.model_copy(
                update={
                    "transit_min_days": change.promise.transit_min_days,
                    "transit_max_days": change.promise.transit_max_days,
                }
            )
        if state.status is Status.SCHEDULED and state.cutoff_at is not None:
            self._move_promise(state.cutoff_at, detail)
        elif not state.late:
            state.delivery_estimate = delivery_window(
                state.facility.timezone, state.promise, state.ships_by
            )

    def _promise_due(self) -> datetime | None:
        """When the order must have shipped, if a timer watches it: orders priced since the
        watch existed (``OrderTerms.watch_ships_by``; older histories have no such wake-up and
        replay as they were written), not late yet, not shipped."""
        state, terms = self._state, self._input.terms
        if terms is None or not terms.watch_ships_by or state.late or state.shipments:
            return None
        return state.ships_by

    async def _mark_late(self, due: datetime) -> None:
        """Records the order late with a new estimate (timeline, ``Late``, the read model and
        the ``order.delayed`` webhook), alerts, and e-mails the merchant."""
        state = self._state
        assert state.promise is not None
        estimate, window = late_estimate(state.facility.timezone, state.promise, workflow.now())
        state.late = True
        state.delivery_estimate = window
        workflow.logger.warning(
            "order %s: not shipped by %s (%s, facility %s)",
            state.order_id,
            due.isoformat(),
            state.status.value,
            state.facility.id,
        )
        workflow.metric_meter().create_counter(
            LATE_METRIC, "orders not shipped by their ship-by promise"
        ).add(1, {"facility": state.facility.id})
        await self._commit(
            EventType.LATE,
            {
                "ships_by": due.isoformat(),
                "estimated_ships_by": estimate.isoformat(),
                "delivery_estimate": window.model_dump(mode="json"),
            },
        )
        notice = DelayNotice(
            order_id=state.order_id,
            merchant_id=state.merchant_id,
            order_reference_id=state.order_reference_id,
            support_email=self._input.support_email,
            support_id=state.support_id,
            facility_name=state.facility.name,
            ships_by=due,
            estimated_ships_by=estimate,
            delivery_estimate=window,
        )
        try:
            await workflow.execute_activity_method(
                DelayActivities.send_delay_notice,
                notice,
                start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
                retry_policy=MAIL_RETRY,
                summary="late e-mail to the merchant",
            )
        except ActivityError as err:
            reason = rejection(err, MAIL_REJECTED)
            if reason is None:
                raise
            await self._commit(EventType.NOTIFICATION_FAILED, {"notice": "late", "reason": reason})

    def _facility_queue(self) -> str | None:
        """Where calls to the facility go: the task queue of the facility the order is routed
        to now (an address change may re-route it), which the workers rate-limit to the
        facility's ``max_jobs_per_second``; None, the workflow's own queue, for older orders."""
        base = self._input.facility_queue_base
        return None if base is None else facility_task_queue(base, self._state.facility.id)

    def _refuse_unless(self, action: Action) -> None:
        state = self._state
        why = refusal(action, state.status, state.cutoff_at, workflow.now(), state.hold)
        if why is not None:
            raise ApplicationError(why.message, type=why.code, non_retryable=True)

    def _next_cutoff(self, after: datetime) -> datetime:
        facility = self._state.facility
        return next_cutoff(facility.schedule, facility.timezone, after)

    def _waiting_text(self, state: OrderState) -> str:
        match state.status:
            case Status.PENDING_PERSONALIZATION:
                return "waiting for the customer's personalization"
            case Status.PENDING_APPROVAL:
                return "waiting for the merchant's approval"
            case Status.SCHEDULED if state.cutoff_at is not None:
                return f"waiting for {describe_cutoff(state.facility, state.cutoff_at)}"
            case Status.ON_HOLD if state.hold is not None:
                return f"on hold ({state.hold.kind}): {state.hold.description}"
            case Status.IN_PRODUCTION:
                return f"in production at {state.facility.name} (job {state.job_id})"
            case Status.PRINTED:
                return f"printed at {state.facility.name}; waiting for shipment"
        return str(state.status.value)


_PERSONALIZING = Status.PENDING_PERSONALIZATION
# Where a failed file check holds the order at once: it has not reached the facility.
_BEFORE_PRODUCTION = (Status.PENDING_PERSONALIZATION, Status.PENDING_APPROVAL, Status.SCHEDULED)
_SHIPPABLE = (Status.IN_PRODUCTION, Status.PRINTED, Status.SHIPPED)
_HOLDABLE = (Status.IN_PRODUCTION, Status.PRINTED)
# Waiting for the facility's reports, with ``production_report_timeout``.
_REPORTING = (Status.IN_PRODUCTION, Status.PRINTED)


def _images_to_check(item: ItemState) -> dict[str, FilePreflight]:
    """The customer's images of an item (its ``image_url`` values), each to be checked."""
    assert item.personalization is not None
    values = item.personalization_values or {}
    return {
        f.name: FilePreflight(status="pending")
        for f in item.personalization.fields
        if f.type == "image_url" and values.get(f.name)
    }


def _job_file(file: FileState) -> dict[str, str]:
    """A file as the facility gets it: its type and URL, and the sha256 of the bytes checked,
    so the facility prints exactly those."""
    out = {"type": file.type, "url": file.url}
    if file.preflight is not None and file.preflight.sha256:
        out["sha256"] = file.preflight.sha256
    return out


def _recorded(state: OrderState, package: Shipment) -> bool:
    """The order has this package already (the facility's job state told it first)."""
    return any(
        (s.carrier, s.tracking_code) == (package.carrier, package.tracking_code)
        for s in state.shipments
    )


def _log_line(state: OrderState, event: TimelineEvent) -> str:
    status, version = state.status.value, state.version
    return f"order {state.order_id}: {event.type} (status {status}, version {version})"


def _hm(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
