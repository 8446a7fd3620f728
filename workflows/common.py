"""What the order, support case and customer contact workflows share: small helpers a workflow
holds or calls, never a base class.

- the timeouts and retry policies of their activities (``PROJECTION_TIMEOUT``,
  ``SIDE_EFFECT_TIMEOUT``, ``PATIENT_RETRY``, ``MAIL_RETRY``);
- ``show``, what the Web UI shows a workflow to wait for, and ``wait_until``, a wait for a
  condition until a moment (one named timer);
- ``Projector``, the one writer of a workflow's state outward (it keeps the ids of the Updates
  applied, so a retry in a later run changes nothing), and ``Outbox``, its e-mails;
- ``continue_as_new``, a new run with the state so far.

The read model, and the webhooks its projection emits, must never show a change that the history
does not hold. A local activity runs before its workflow task is committed, so it may project
only what follows from events the history already holds (timers, signals, activity results): a
retried task recomputes exactly that. An Update's change is not in the history until the task
that accepts it completes, and an Update whose task fails or times out can vanish. So a batch of
changes holding an Update's change is projected by a regular activity, which the server starts
only once that task (the acceptance with it) is committed. The Update answers after its
projection, or, where the caller writes the projection it answers with (an order's Update:
``Projector.project_answer``), as soon as that activity is scheduled: the task that completes
the Update is committed before the caller hears the answer, so the history holds the change
either way. Projections run one at a time, so the read model and the webhooks see changes in the
order they happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Never, NoReturn, Protocol, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.errors import MAIL_REJECTED
    from contracts.updates import applied_digest, remember

PROJECTION_TIMEOUT = timedelta(seconds=30)
# E-mails and facility notices.
SIDE_EFFECT_TIMEOUT = timedelta(seconds=60)
# Retry until it goes through, backing off to every 5 minutes.
PATIENT_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))
# E-mails: a relay that is down is retried; a server that refuses the message is final.
MAIL_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=5), non_retryable_error_types=[MAIL_REJECTED]
)


def show(text: str) -> None:
    """What the workflow is shown to wait for (its current details in the Web UI)."""
    workflow.set_current_details(text[:300])


async def wait_until(
    moment: datetime, summary: str, done: Callable[[], bool], details: str | None = None
) -> bool:
    """Waits for ``done`` until ``moment``; True if ``done`` came first.

    ``summary`` names the timer in the Web UI; ``details`` (or the summary) is shown as what the
    workflow waits for.
    """
    show(details or summary)
    remaining = moment - workflow.now()
    if remaining <= timedelta(0):
        return done()
    try:
        await workflow.wait_condition(done, timeout=remaining, timeout_summary=summary[:200])
        return True
    except TimeoutError:
        return done()


def rejection(err: ActivityError, error_type: str) -> str | None:
    """The reason, when an activity failed with ``error_type`` (a refusal no retry changes)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == error_type:
        return cause.message
    return None


class Versioned(Protocol):
    """A workflow's state as a projector keeps it: every change bumps ``version``; the Updates
    that made changes are kept in ``applied_updates`` (``contracts.updates``)."""

    version: int
    updated_at: datetime
    applied_updates: list[str]


StateT = TypeVar("StateT", bound=Versioned)
ChangeT = TypeVar("ChangeT")
ProjectionT = TypeVar("ProjectionT")
MailT = TypeVar("MailT")
# An activity method, named by the class that defines it: the workflow never calls it itself.
Activity = Callable[[Never, ProjectionT], Awaitable[None]]


class Projector(Generic[StateT, ChangeT, ProjectionT]):
    """The one writer of a workflow's ``state`` outward.

    ``record`` notes a change: the state's version, the Update that made it (``applied``), the
    search attributes (none when ``search_attributes`` gives None), what the workflow is shown
    to wait for, a log line. ``project_pending`` then projects every change not projected yet,
    with the ``build`` projection, through ``activity``: a local activity, unless an Update made
    one of the changes (see the module's docstring). A projection waits for the one running,
    and an earlier change's projection may carry a later change, leaving nothing to do.
    """

    def __init__(
        self,
        state: StateT,
        *,
        build: Callable[[list[ChangeT]], ProjectionT],
        activity: Activity[ProjectionT],
        search_attributes: Callable[[StateT], Sequence[SearchAttributeUpdate[Any]] | None],
        details: Callable[[StateT], str],
        log: Callable[[StateT, ChangeT], str],
    ) -> None:
        self.state = state
        self.changes: list[ChangeT] = []
        # Set when one of ``changes`` was made by an Update.
        self.update_in_batch = False
        self._lock = asyncio.Lock()
        # The write of the projection last answered with (``project_answer``), while it runs.
        self._writing: asyncio.Task[None] | None = None
        self._build = build
        self._activity = activity
        self._search_attributes = search_attributes
        self._details = details
        self._log = log

    @property
    def pending(self) -> bool:
        """Some change is not projected yet, or its projection is still running."""
        return bool(self.changes) or self._lock.locked()

    @property
    def contended(self) -> bool:
        """A projection is running."""
        return self._lock.locked()

    def details(self) -> str:
        return self._details(self.state)

    def applied(self) -> bool:
        """The Update being handled (or validated) made its change already, in this run or an
        earlier one (Temporal deduplicates Update ids within one run only): its handler
        answers as it did the first time, changing nothing, and its validator accepts it."""
        info = workflow.current_update_info()
        return info is not None and applied_digest(info.id) in self.state.applied_updates

    def record(self, change: ChangeT) -> None:
        state = self.state
        state.version += 1
        state.updated_at = workflow.now()
        self.changes.append(change)
        updates = self._search_attributes(state)
        if updates is not None:
            workflow.upsert_search_attributes(updates)
        update = workflow.current_update_info()
        if update is not None:
            self.update_in_batch = True
            state.applied_updates = remember(state.applied_updates, update.id)
        show(self._details(state))
        workflow.logger.info(self._log(state, change))

    async def commit(self, change: ChangeT) -> None:
        """Records ``change`` and projects it (with any before it)."""
        self.record(change)
        await self.project_pending()

    async def project_pending(self) -> None:
        async with self._lock:
            if self.changes:  # else an earlier commit's projection carried these
                await self.project(local=not self.update_in_batch)

    async def project_answer(self) -> ProjectionT | None:
        """For an Update whose caller writes the projection it is answered with: projects the
        changes so far, by a regular activity, once the projection running has been written
        (so the read model holds every change before these), and returns that projection as
        soon as its activity is scheduled; the next projection waits for it as for any other.
        None: an earlier projection carried these changes, and it has been written."""
        await self._lock.acquire()
        if not self.changes:
            self._lock.release()
            return None
        projection = self._take()
        writing = self._write(projection)

        async def write_then_release() -> None:
            try:
                await writing
            finally:
                self._lock.release()

        self._writing = asyncio.create_task(write_then_release())
        return projection

    async def written(self) -> None:
        """Until the projection last answered with (``project_answer``) has been written."""
        if self._writing is not None:
            await self._writing

    async def project(self, *, local: bool) -> None:
        """Projects the changes so far at once (``project_pending`` waits its turn)."""
        projection = self._take()
        if local:
            await workflow.execute_local_activity_method(
                self._activity, projection, start_to_close_timeout=PROJECTION_TIMEOUT
            )
            return
        await self._write(projection)

    def _take(self) -> ProjectionT:
        """The projection of the changes so far, which are then no longer pending."""
        projection = self._build(self.changes)
        self.changes = []
        self.update_in_batch = False
        return projection

    def _write(self, projection: ProjectionT) -> Awaitable[None]:
        """Schedules the regular activity that writes ``projection``."""
        return workflow.start_activity_method(
            self._activity,
            projection,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PATIENT_RETRY,
            summary=f"read model: version {self.state.version}",
        )


class Outbox(Generic[MailT]):
    """E-mails to send once the change that caused them is projected, in order, through
    ``activity``; ``refused`` hears of one a mail server refused for good."""

    def __init__(
        self,
        *,
        activity: Activity[MailT],
        summary: Callable[[MailT], str],
        refused: Callable[[MailT, str], Awaitable[None]],
    ) -> None:
        self.mails: list[MailT] = []
        self._activity = activity
        self._summary = summary
        self._refused = refused

    @property
    def pending(self) -> bool:
        return bool(self.mails)

    def add(self, mail: MailT) -> None:
        self.mails.append(mail)

    async def send(self) -> None:
        """Sends every mail queued, and those queued meanwhile."""
        while self.mails:
            mail = self.mails.pop(0)
            try:
                await workflow.execute_activity_method(
                    self._activity,
                    mail,
                    start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
                    retry_policy=MAIL_RETRY,
                    summary=self._summary(mail),
                )
            except ActivityError as err:
                reason = rejection(err, MAIL_REJECTED)
                if reason is None:
                    raise
                await self._refused(mail, reason)


async def continue_as_new(
    inp: BaseModel,
    projector: Projector[StateT, ChangeT, ProjectionT],
    outbox: Outbox[MailT] | None = None,
) -> NoReturn:
    """A new run of ``inp`` with the state so far (carried as ``state``), once every handler
    has finished and every change is projected: long lives keep their histories small.

    Mails queued meanwhile (an Update that finishes while this run waits may queue one) are
    sent first: nothing else sends them while the run waits here.
    """
    while True:
        if outbox is not None:
            await outbox.send()
        await workflow.wait_condition(
            lambda: (
                (outbox is not None and outbox.pending)
                or (workflow.all_handlers_finished() and not projector.pending)
            )
        )
        if outbox is None or not outbox.pending:
            break
    workflow.continue_as_new(inp.model_copy(update={"state": projector.state}))
