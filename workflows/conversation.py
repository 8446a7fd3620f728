"""The life of a conversation (a support case, a customer contact): a helper its workflow holds.

A conversation waits for the next moment it acts on (``next_wake``: a reminder, a deadline, a
close; None while nothing is due) or for a change that moves that moment, whichever comes first,
then acts (``fire``) if the moment is still due. Its Updates change it meanwhile and call
``moved`` when the moment may have moved. E-mails in the outbox go out before every wait, once
the change that caused them is projected (``workflows.common.Projector``). When Temporal
suggests it (or after the input's ``changes_per_run``), the conversation continues as new with
its state, sending the mails that Updates still running queue meanwhile; once closed, it sends
what is left and ends when its handlers have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Generic, NamedTuple, NoReturn

from temporalio import workflow

from contracts.conversations import ConversationInput
from workflows.common import (
    ChangeT,
    MailT,
    Outbox,
    ProjectionT,
    Projector,
    StateT,
    continue_as_new,
    show,
    wait_until,
)


class Wake(NamedTuple):
    """What a conversation waits for: ``kind`` is due ``at``; ``summary`` names the timer."""

    at: datetime
    kind: str
    summary: str


class Conversation(Generic[StateT, ChangeT, ProjectionT, MailT]):
    def __init__(
        self,
        inp: ConversationInput[Any],
        projector: Projector[StateT, ChangeT, ProjectionT],
        outbox: Outbox[MailT],
        *,
        closed: Callable[[], bool],
        next_wake: Callable[[], Wake | None],
        fire: Callable[[str], Awaitable[None]],
    ) -> None:
        self._input = inp
        self._projector = projector
        self._outbox = outbox
        self._closed = closed
        self._next_wake = next_wake
        self._fire = fire
        # Bumped by every change that can move what the conversation waits for.
        self._generation = 0
        self._first_version = projector.state.version

    def _should_continue(self) -> bool:
        """Temporal suggests a new run, or this run made the input's ``changes_per_run``."""
        limit = self._input.changes_per_run
        if limit is not None and self._projector.state.version - self._first_version >= limit:
            return True
        return workflow.info().is_continue_as_new_suggested()

    def moved(self) -> None:
        """What the conversation waits for may have changed: it looks again."""
        self._generation += 1

    async def run(self) -> None:
        while not self._closed():
            await self._outbox.send()
            if self._should_continue():
                await self.continue_as_new()
            generation = self._generation

            def changed(g: int = generation) -> bool:
                return self._generation != g or self._outbox.pending

            wake = self._next_wake()
            if wake is None:
                show(self._projector.details())
                await workflow.wait_condition(changed)
                continue
            if await wait_until(wake.at, wake.summary, changed):
                continue
            # An Update may have changed the conversation while the timer fired: still due?
            again = self._next_wake()
            if again is None or again.kind != wake.kind or again.at > workflow.now():
                continue
            await self._fire(wake.kind)
        await self._outbox.send()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._outbox.send()  # a handler that finished last may have queued one

    async def continue_as_new(self) -> NoReturn:
        await continue_as_new(self._input, self._projector, self._outbox)
