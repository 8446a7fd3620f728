"""What the support case and customer contact workflows share: a conversation whose every change
goes through one ``_record`` (version, search attributes, read model, webhook) and whose e-mails
go out after the change that caused them is projected.

As for orders (DESIGN.md, "Truth under faults"), a batch holding an Update's change is projected
by a regular activity, which the server starts only once the Update's acceptance is persisted;
changes that follow from timers use a local activity. Projections run one at a time, so the
read model and webhooks see changes in the order they happened.

A subclass sets ``_state`` (with ``version`` and ``updated_at``), ``_input`` (a model that
carries ``state`` for a new run) and ``_outbox`` in ``__init__`` after calling ``_conversation``,
and says how to upsert its search attributes, describe what it waits for, project itself and
send one of its e-mails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.errors import MAIL_REJECTED

PROJECTION_TIMEOUT = timedelta(seconds=30)
MAIL_TIMEOUT = timedelta(seconds=60)
PATIENT_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))
# A relay that is down is retried; a server refusing the message for good is final.
MAIL_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=5), non_retryable_error_types=[MAIL_REJECTED]
)


class Conversation:
    _state: Any
    _input: Any
    _outbox: list[Any]

    def _conversation(self) -> None:
        self._changes: list[str] = []
        # Set when a change in ``_changes`` was made by an Update (see ``_record``).
        self._update_in_batch = False
        self._projecting = asyncio.Lock()
        # Bumped by every change that can move what the conversation waits for.
        self._generation = 0

    # ------------------------------------------------------------------ what subclasses say

    def _search_attribute_updates(self) -> list[Any]:
        raise NotImplementedError

    def _waiting_text(self) -> str:
        raise NotImplementedError

    def _log_line(self, change: str) -> str:
        raise NotImplementedError

    async def _project(self, *, local: bool) -> None:
        """Builds the projection of the changes so far and runs it with ``_run_projection``."""
        raise NotImplementedError

    def _mail_activity(self) -> Callable[..., Any]:
        raise NotImplementedError

    def _mail_summary(self, mail: Any) -> str:
        return f"e-mail ({mail.kind.replace('_', ' ')})"

    async def _mail_refused(self, mail: Any, reason: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the one place

    async def _record(self, change: str) -> None:
        """Records a change: search attributes, then read model and webhook. The only writer."""
        state = self._state
        state.version += 1
        state.updated_at = workflow.now()
        self._changes.append(change)
        workflow.upsert_search_attributes(self._search_attribute_updates())
        if workflow.current_update_info() is not None:
            self._update_in_batch = True
        self._show(self._waiting_text())
        workflow.logger.info(self._log_line(change))
        async with self._projecting:
            if self._changes:  # else an earlier commit's projection carried this one
                await self._project(local=not self._update_in_batch)

    async def _run_projection(
        self, activity: Callable[..., Any], projection: Any, *, local: bool
    ) -> None:
        """Runs ``activity`` on ``projection``, which carries every change so far."""
        self._changes = []
        self._update_in_batch = False
        if local:
            await workflow.execute_local_activity_method(
                activity, projection, start_to_close_timeout=PROJECTION_TIMEOUT
            )
            return
        await workflow.execute_activity_method(
            activity,
            projection,
            start_to_close_timeout=PROJECTION_TIMEOUT,
            retry_policy=PATIENT_RETRY,
            summary=f"read model: version {projection.state.version}",
        )

    async def _send_mails(self) -> None:
        while self._outbox:
            mail = self._outbox.pop(0)
            try:
                await workflow.execute_activity_method(
                    self._mail_activity(),
                    mail,
                    start_to_close_timeout=MAIL_TIMEOUT,
                    retry_policy=MAIL_RETRY,
                    summary=self._mail_summary(mail),
                )
            except ActivityError as err:
                cause = err.cause
                if not (isinstance(cause, ApplicationError) and cause.type == MAIL_REJECTED):
                    raise
                await self._mail_refused(mail, cause.message)

    async def _continue_as_new(self) -> None:
        """A new run with the state so far: a long conversation keeps its history small."""
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and not self._changes and not self._outbox
        )
        workflow.continue_as_new(self._input.model_copy(update={"state": self._state}))

    # ------------------------------------------------------------------ helpers

    async def _wait_until(self, moment: datetime, summary: str, done: Callable[[], bool]) -> bool:
        """Waits for ``done`` until ``moment``; True if ``done`` came first. ``summary`` names
        the timer in the Web UI and is what the conversation is shown to wait for."""
        self._show(summary)
        remaining = moment - workflow.now()
        if remaining <= timedelta(0):
            return done()
        try:
            await workflow.wait_condition(done, timeout=remaining, timeout_summary=summary[:200])
            return True
        except TimeoutError:
            return done()

    @staticmethod
    def _show(text: str) -> None:
        workflow.set_current_details(text[:300])
