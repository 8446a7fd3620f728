"""The relay from committed rows to running workflows: ``POST /v1/orders``,
``POST /v1/support/cases`` and ``POST /v1/customer-contacts`` never wait for Temporal, and
everything they answered 201 gets its workflow.

The row and its outbox row (``order_starts``, ``support_case_starts``,
``customer_contact_starts``) commit in one transaction. Right after the answer, the API starts
the workflow (``WorkflowStarter.start_soon``); the outbox rows of started workflows are deleted
in batches, one write transaction for many starts (SQLite has one writer). Whatever prevents
the start (Temporal down, the API killed between commit and start) leaves the row, and the
sweep (``WorkflowStarter.run``, in every API process) starts it later, backing off while
Temporal stays down. Starting twice is harmless: the workflow id is the row's id and the start
uses USE_EXISTING.

Until the start happened, a change (an order's cancel or address, a case's message) goes as
update-with-start (``start_operation``), so it can be made the moment the row is answered 201.

One ``Relay`` describes what is started for each kind of row (``ORDERS``, ``CASES``,
``CONTACTS``); ``OrderStarter``, ``CaseStarter`` and ``ContactStarter`` run it, one of each per
API process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from contracts.cases import CaseInput
from contracts.contacts import ContactInput
from db.engine import utcnow
from db.models import (
    CustomerContact,
    CustomerContactStart,
    Order,
    OrderStart,
    SupportCase,
    SupportCaseStart,
)
from domain.cases import CaseState
from domain.contacts import ContactState
from domain.orders import OrderInput, OrderState
from runtime.settings import Settings
from workflows.cases import SupportCaseWorkflow, case_search_attributes
from workflows.contacts import CustomerContactWorkflow, contact_search_attributes
from workflows.orders import OrderWorkflow, search_attributes_for

log = logging.getLogger("printflow.api.starts")

SWEEP_EVERY = 2.0  # seconds between looks at the outbox
SWEEP_BATCH = 100
FORGET_AFTER = 0.2  # seconds: how long started rows wait to be deleted together
MAX_BACKOFF = timedelta(minutes=1)


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2**attempts), MAX_BACKOFF)


# A workflow's input and the keyword arguments of its start.
Start = tuple[Any, dict[str, Any]]


@dataclass(frozen=True)
class Relay:
    """What one relay starts: the row's table, its outbox table and the outbox's key (the row's
    id), and the workflow: its run method, its input (``workflow_input`` of the row) and the
    search attributes it starts with (from ``state`` of the row)."""

    what: str  # "order", "case", "contact": for the logs
    row: Any
    outbox: Any  # its key, due_at, attempts, last_error, static_summary (, static_details)
    key: Any
    run: Callable[..., Any]
    input: type[BaseModel]
    state: type[BaseModel]
    search_attributes: Callable[[Any], Any]
    details: bool = False  # the outbox keeps the workflow's static details too

    def start(self, settings: Settings, row: Any, start: Any) -> Start:
        """The workflow's input and start options, from the rows as stored."""
        return self.start_of(
            settings,
            row.id,
            self.input.model_validate(row.workflow_input),
            self.state.model_validate(row.state),
            start,
        )

    def start_of(
        self, settings: Settings, row_id: str, inp: BaseModel, state: BaseModel, start: Any
    ) -> Start:
        """The workflow's input and start options; the state is ignored by Temporal if the
        workflow runs already, so it starts with the row as created."""
        options: dict[str, Any] = {
            "id": row_id,
            "task_queue": settings.task_queue,
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
            "task_timeout": settings.workflow_task_timeout,
            "search_attributes": self.search_attributes(state),
            "static_summary": start.static_summary,
        }
        if self.details:
            options["static_details"] = start.static_details
        return inp, options


ORDERS = Relay(
    "order",
    Order,
    OrderStart,
    OrderStart.order_id,
    OrderWorkflow.run,
    OrderInput,
    OrderState,
    search_attributes_for,
    details=True,
)
CASES = Relay(
    "case",
    SupportCase,
    SupportCaseStart,
    SupportCaseStart.case_id,
    SupportCaseWorkflow.run,
    CaseInput,
    CaseState,
    case_search_attributes,
)
CONTACTS = Relay(
    "contact",
    CustomerContact,
    CustomerContactStart,
    CustomerContactStart.contact_id,
    CustomerContactWorkflow.run,
    ContactInput,
    ContactState,
    contact_search_attributes,
)
RELAYS = {relay.row: relay for relay in (ORDERS, CASES, CONTACTS)}


# A workflow's start, to send with an Update (update-with-start): each call makes a new
# operation, since one is sent once.
StartOperation = Callable[[], WithStartWorkflowOperation[Any, Any]]


async def start_operation(
    session: AsyncSession, settings: Settings, row: Order | SupportCase | CustomerContact
) -> StartOperation | None:
    """The start to send with an Update, while the row's workflow may not be running yet."""
    relay = RELAYS[type(row)]
    start = await session.get(relay.outbox, row.id)
    if start is None:
        return None
    inp, options = relay.start(settings, row, start)
    return lambda: WithStartWorkflowOperation(relay.run, inp, **options)


class WorkflowStarter:
    """Starts the workflows of committed rows of one relay; one per API process and relay."""

    relay: Relay

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: Client, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: set[str] = set()  # started, outbox row not deleted yet
        self._forgetting: asyncio.Task[None] | None = None

    def start_soon(self, row_id: str, start: Start | None = None) -> None:
        """Starts the row's workflow in the background (called after the 201 is sent).

        ``start``: the input and options of the rows the caller has just committed
        (``Relay.start_of``), which are then not read back. Should the workflow have started
        meanwhile (an update-with-start), this start finds it (USE_EXISTING), or finds it
        closed and starts nothing (REJECT_DUPLICATE), as a start after a read would."""
        task = asyncio.create_task(self._start(row_id, start))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Sweeps the outbox until cancelled: rows whose start is due (overdue) are started."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the database may be down: try again on the next turn
                log.warning("%s start sweep failed: %s", self.relay.what, type(err).__name__)
            await asyncio.sleep(SWEEP_EVERY)

    async def sweep(self) -> int:
        """Claims and starts every due row; returns how many it started."""
        outbox = self.relay.outbox
        async with self._sessions() as session:
            due = list(
                await session.exec(
                    select(self.relay.key, outbox.due_at, outbox.attempts)
                    .where(col(outbox.due_at) <= utcnow())
                    .order_by(col(outbox.due_at))
                    .limit(SWEEP_BATCH)
                )
            )
        started = 0
        for row_id, due_at, attempts in due:
            if await self._claim(row_id, due_at, attempts):
                started += await self._start(row_id)
        return started

    async def _claim(self, row_id: str, due_at: datetime, attempts: int) -> bool:
        """Moves the row's due time on, so another API process's sweep leaves it alone."""
        outbox = self.relay.outbox
        async with self._sessions() as session:
            result = await session.exec(
                update(outbox)
                .where(col(self.relay.key) == row_id, col(outbox.due_at) == due_at)
                .values(due_at=utcnow() + _backoff(attempts + 1), attempts=attempts + 1)
            )
            await session.commit()
            return bool(result.rowcount)

    async def _start(self, row_id: str, given: Start | None = None) -> int:
        relay = self.relay
        async with self._sessions() as session:
            if given is None:
                row = await session.get(relay.row, row_id)
                start = await session.get(relay.outbox, row_id)
                if row is None or start is None:
                    return 0  # started already (by another process, or by an update-with-start)
                inp, options = relay.start(self._settings, row, start)
                attempts = start.attempts
                await session.commit()  # no connection held while Temporal answers
            else:
                (inp, options), attempts = given, 0
            try:
                await self._client.start_workflow(relay.run, inp, **options)
            except WorkflowAlreadyStartedError:
                pass  # it ran and closed already; that is the row's workflow
            except Exception as err:
                log.warning(
                    "%s %s: workflow not started yet (%s); retrying", relay.what, row_id, err
                )
                await session.exec(
                    update(relay.outbox)
                    .where(col(relay.key) == row_id)
                    .values(
                        # A claim by the sweep counted this attempt already.
                        due_at=utcnow() + _backoff(max(attempts, 1)),
                        last_error=f"{type(err).__name__}: {err}"[:500],
                    )
                )
                await session.commit()
                return 0
        self._forget_soon(row_id)
        return 1

    def _forget_soon(self, row_id: str) -> None:
        """Deletes the started row's outbox row, with the others started meanwhile.

        Until then the row is harmless: a sweep or an update-with-start finds the workflow
        running (USE_EXISTING)."""
        self._started.add(row_id)
        if self._forgetting is None or self._forgetting.done():
            self._forgetting = asyncio.create_task(self._forget(delay=FORGET_AFTER))

    async def _forget(self, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        # Rows started while a delete is in flight join the next round of this same task (a
        # new task is only made when none runs), so none is left behind.
        while self._started:
            ids, self._started = self._started, set()
            try:
                async with self._sessions() as session:
                    await session.exec(
                        delete(self.relay.outbox).where(col(self.relay.key).in_(ids))
                    )
                    await session.commit()
            except Exception as err:  # kept for the next batch; a sweep starts nothing new
                log.warning(
                    "could not delete %d started outbox rows: %s", len(ids), type(err).__name__
                )
                self._started |= ids
                return

    async def close(self) -> None:
        """Lets the starts in flight finish (what they do not finish, the next sweep does)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._forgetting is not None:
            self._forgetting.cancel()
        await self._forget()


class OrderStarter(WorkflowStarter):
    relay = ORDERS


class CaseStarter(WorkflowStarter):
    relay = CASES


class ContactStarter(WorkflowStarter):
    relay = CONTACTS
