"""The relay from committed orders to running workflows: ``POST /v1/orders`` never waits for
Temporal, and every order it answered 201 gets its workflow.

The order's row and its ``order_starts`` row (the outbox) commit in one transaction. Right after
the answer, the API starts the workflow (``start_soon``); the rows of started workflows are
deleted in batches, one write transaction for many starts (SQLite has one writer). Whatever
prevents that (Temporal down, the API killed between commit and start) leaves the row, and the
sweep (``run``, in every API process) starts it later, backing off while Temporal stays down.
Starting twice is harmless: the workflow id is the order id and the start uses USE_EXISTING.

Until the start happened, a merchant's cancel or address change goes as update-with-start
(``start_operation``), so an order can be changed the moment it is answered 201.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from db.models import Order, OrderStart
from domain.orders import OrderInput, OrderState
from settings import Settings
from workflows.order import OrderWorkflow, search_attributes_for

log = logging.getLogger("printflow.api.starts")

SWEEP_EVERY = 2.0  # seconds between looks at the outbox
SWEEP_BATCH = 100
FORGET_AFTER = 0.2  # seconds: how long started rows wait to be deleted together
MAX_BACKOFF = timedelta(minutes=1)


def _now() -> datetime:
    return datetime.now(UTC)


def start_options(
    settings: Settings, order: Order, start: OrderStart
) -> tuple[OrderInput, dict[str, Any]]:
    """The workflow's input and start options, the same for a start and an update-with-start."""
    inp = OrderInput.model_validate(order.workflow_input)
    # Ignored by Temporal if the workflow runs already; otherwise the order as created.
    state = OrderState.model_validate(order.state)
    return inp, {
        "id": order.id,
        "task_queue": settings.task_queue,
        "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "task_timeout": settings.workflow_task_timeout,
        "search_attributes": search_attributes_for(state),
        "static_summary": start.static_summary,
        "static_details": start.static_details,
    }


async def start_operation(
    session: AsyncSession, settings: Settings, order: Order
) -> WithStartWorkflowOperation[Any, Any] | None:
    """The start to send with an Update, while the order's workflow may not be running yet."""
    start = await session.get(OrderStart, order.id)
    if start is None:
        return None
    inp, options = start_options(settings, order, start)
    return WithStartWorkflowOperation(OrderWorkflow.run, inp, **options)


class OrderStarter:
    """Starts the workflows of committed orders; one per API process (``app.state.starter``)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: Client, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: set[str] = set()  # started, outbox row not deleted yet
        self._forgetting: asyncio.Task[None] | None = None

    def start_soon(self, order_id: str) -> None:
        """Starts the order's workflow in the background (called after the 201 is sent)."""
        task = asyncio.create_task(self._start(order_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Sweeps the outbox until cancelled: orders whose start is due (overdue) are started."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the database may be down: try again on the next turn
                log.warning("order start sweep failed: %s", type(err).__name__)
            await asyncio.sleep(SWEEP_EVERY)

    async def sweep(self) -> int:
        """Claims and starts every due order; returns how many it started."""
        async with self._sessions() as session:
            due = list(
                await session.exec(
                    select(OrderStart.order_id, OrderStart.due_at, OrderStart.attempts)
                    .where(col(OrderStart.due_at) <= _now())
                    .order_by(col(OrderStart.due_at))
                    .limit(SWEEP_BATCH)
                )
            )
        started = 0
        for order_id, due_at, attempts in due:
            if await self._claim(order_id, due_at, attempts):
                started += await self._start(order_id)
        return started

    async def _claim(self, order_id: str, due_at: datetime, attempts: int) -> bool:
        """Moves the row's due time on, so another API process's sweep leaves it alone."""
        async with self._sessions() as session:
            result = await session.exec(
                update(OrderStart)
                .where(col(OrderStart.order_id) == order_id, col(OrderStart.due_at) == due_at)
                .values(due_at=_now() + _backoff(attempts + 1), attempts=attempts + 1)
            )
            await session.commit()
            return bool(result.rowcount)

    async def _start(self, order_id: str) -> int:
        async with self._sessions() as session:
            order = await session.get(Order, order_id)
            start = await session.get(OrderStart, order_id)
            if order is None or start is None:
                return 0  # started already (by another process, or by an update-with-start)
            inp, options = start_options(self._settings, order, start)
            attempts = start.attempts
            await session.commit()  # no connection held while Temporal answers
            try:
                await self._client.start_workflow(OrderWorkflow.run, inp, **options)
            except WorkflowAlreadyStartedError:
                pass  # it ran and closed already; that is the order
            except Exception as err:
                log.warning("order %s: workflow not started yet (%s); retrying", order_id, err)
                await session.exec(
                    update(OrderStart)
                    .where(col(OrderStart.order_id) == order_id)
                    .values(
                        # A claim by the sweep counted this attempt already.
                        due_at=_now() + _backoff(max(attempts, 1)),
                        last_error=f"{type(err).__name__}: {err}"[:500],
                    )
                )
                await session.commit()
                return 0
        self._forget_soon(order_id)
        return 1

    def _forget_soon(self, order_id: str) -> None:
        """Deletes the started order's outbox row, with the others started meanwhile.

        Until then the row is harmless: a sweep or an update-with-start finds the workflow
        running (USE_EXISTING)."""
        self._started.add(order_id)
        if self._forgetting is None or self._forgetting.done():
            self._forgetting = asyncio.create_task(self._forget(delay=FORGET_AFTER))

    async def _forget(self, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        ids, self._started = self._started, set()
        if not ids:
            return
        try:
            async with self._sessions() as session:
                await session.exec(delete(OrderStart).where(col(OrderStart.order_id).in_(ids)))
                await session.commit()
        except Exception as err:  # kept for the next batch; a sweep meanwhile starts nothing new
            log.warning("could not delete %d started outbox rows: %s", len(ids), type(err).__name__)
            self._started |= ids

    async def close(self) -> None:
        """Lets the starts in flight finish (what they do not finish, the next sweep does)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._forgetting is not None:
            self._forgetting.cancel()
        await self._forget()


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2**attempts), MAX_BACKOFF)
