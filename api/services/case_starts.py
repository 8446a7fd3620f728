"""The relay from committed support cases to running workflows, as ``starts`` is for orders.

``POST /v1/support/cases`` commits the case, its first message and its ``support_case_starts``
row (the outbox) in one transaction and answers 201 without waiting for Temporal. Right after,
the API starts the workflow (``start_soon``) and deletes the row; whatever prevents that
(Temporal down, the API killed in between) leaves the row, and the sweep in every API process
starts it later, backing off. Starting twice is harmless: the workflow id is the case id and
the start uses USE_EXISTING. Until the start happened, a message, assignment, resolve or close
goes as update-with-start (``start_operation``), so a case can be answered the moment it exists.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.services.starts import SWEEP_BATCH, SWEEP_EVERY, _backoff
from db.models import SupportCase, SupportCaseStart
from domain.cases import CaseState
from settings import Settings
from workflows.support_case import SupportCaseWorkflow, case_search_attributes
from workflows.support_case_messages import CaseInput

log = logging.getLogger("printflow.api.starts")


def _now() -> datetime:
    return datetime.now(UTC)


def start_options(
    settings: Settings, case: SupportCase, start: SupportCaseStart
) -> tuple[CaseInput, dict[str, Any]]:
    inp = CaseInput.model_validate(case.workflow_input)
    state = CaseState.model_validate(case.state)
    return inp, {
        "id": case.id,
        "task_queue": settings.task_queue,
        "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "task_timeout": settings.workflow_task_timeout,
        "search_attributes": case_search_attributes(state),
        "static_summary": start.static_summary,
    }


async def start_operation(
    session: AsyncSession, settings: Settings, case: SupportCase
) -> WithStartWorkflowOperation[Any, Any] | None:
    """The start to send with an Update, while the case's workflow may not be running yet."""
    start = await session.get(SupportCaseStart, case.id)
    if start is None:
        return None
    inp, options = start_options(settings, case, start)
    return WithStartWorkflowOperation(SupportCaseWorkflow.run, inp, **options)


class CaseStarter:
    """Starts the workflows of committed cases; one per API process (``app.state.case_starter``)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: Client, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self._tasks: set[asyncio.Task[Any]] = set()

    def start_soon(self, case_id: str) -> None:
        task = asyncio.create_task(self._start(case_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the database may be down: try again on the next turn
                log.warning("case start sweep failed: %s", type(err).__name__)
            await asyncio.sleep(SWEEP_EVERY)

    async def sweep(self) -> int:
        async with self._sessions() as session:
            due = list(
                await session.exec(
                    select(
                        SupportCaseStart.case_id, SupportCaseStart.due_at, SupportCaseStart.attempts
                    )
                    .where(col(SupportCaseStart.due_at) <= _now())
                    .order_by(col(SupportCaseStart.due_at))
                    .limit(SWEEP_BATCH)
                )
            )
        started = 0
        for case_id, due_at, attempts in due:
            if await self._claim(case_id, due_at, attempts):
                started += await self._start(case_id)
        return started

    async def _claim(self, case_id: str, due_at: datetime, attempts: int) -> bool:
        async with self._sessions() as session:
            result = await session.exec(
                update(SupportCaseStart)
                .where(
                    col(SupportCaseStart.case_id) == case_id,
                    col(SupportCaseStart.due_at) == due_at,
                )
                .values(due_at=_now() + _backoff(attempts + 1), attempts=attempts + 1)
            )
            await session.commit()
            return bool(result.rowcount)

    async def _start(self, case_id: str) -> int:
        async with self._sessions() as session:
            case = await session.get(SupportCase, case_id)
            start = await session.get(SupportCaseStart, case_id)
            if case is None or start is None:
                return 0  # started already
            inp, options = start_options(self._settings, case, start)
            attempts = start.attempts
            await session.commit()  # no connection held while Temporal answers
            try:
                await self._client.start_workflow(SupportCaseWorkflow.run, inp, **options)
            except WorkflowAlreadyStartedError:
                pass  # it ran and closed already
            except Exception as err:
                log.warning("case %s: workflow not started yet (%s); retrying", case_id, err)
                await session.exec(
                    update(SupportCaseStart)
                    .where(col(SupportCaseStart.case_id) == case_id)
                    .values(
                        due_at=_now() + _backoff(max(attempts, 1)),
                        last_error=f"{type(err).__name__}: {err}"[:500],
                    )
                )
                await session.commit()
                return 0
            await session.exec(
                delete(SupportCaseStart).where(col(SupportCaseStart.case_id) == case_id)
            )
            await session.commit()
            return 1

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
