"""Asking an order's workflow to change: one Update, and its failures as the API's errors.

The workflow alone decides. A refusal from its validator (an ``ApplicationError`` whose type is
a refusal code) becomes a 409 with that code; nothing changed. A workflow that has closed
cannot answer, so its last projection says why nothing can change (``on_closed``). Temporal also
answers NOT_FOUND for a workflow still running, when a busy server lost the Update it admitted
(its Update registry was cleared): the workflow's description tells the two apart, and a running
workflow (or one whose start is still pending) gets the same Update again, with the same id,
until ``timeout``.

An Update waits at most ``timeout`` (``UPDATE_TIMEOUT``) for the workflow, then the API answers
503 ``order_busy``: the change may still happen (GET tells). The caller's ``Idempotency-Key``
becomes the Update's id (``update_id``). Temporal runs an Update id once per workflow run; the
workflow keeps the ids it applied across its runs (``contracts.updates``), so the retry of a
write answered 503 gets the first outcome instead of applying it again, after a continue-as-new
too; and when the workflow has closed since, ``on_closed`` answers from the read model, which
holds the same ids (``applied``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from activities.order_projection import write_projection
from api.errors import ApiError, Conflict, Unavailable
from api.relay import StartOperation
from contracts.orders import UpdateAnswer, whole_answer
from contracts.updates import applied_digest
from db.models import Order
from domain.orders import OrderState
from workflows.client import workflow_status

# An update method of OrderWorkflow, such as ``OrderWorkflow.cancel``.
OrderUpdate = UpdateMethodMultiParam[..., UpdateAnswer]
Result = TypeVar("Result")
# What the caller answers when the workflow has closed (it reads the last state): the error to
# raise, or the answer itself when that state holds the Update as applied (``applied``).
OnClosed = Callable[[], Awaitable[Any]]
# Turns a refusal (code, message, details) into the error the caller's users understand.
OnRefusal = Callable[[str, str, Any], ApiError]


def conflict(code: str, message: str, details: Any) -> ApiError:
    return Conflict(message, code=code)


def update_id(update: Any, idempotency_key: str | None) -> str | None:
    """The Update's id: the caller's key, scoped to the Update it was sent with; None (a
    random id) without a key."""
    if not idempotency_key:
        return None
    return f"{getattr(update, '__name__', 'update')}:{idempotency_key}"


def applied(state: Any, update: Any, idempotency_key: str | None) -> bool:
    """``state`` (a workflow's last state, as the read model holds it) says the Update with
    this key made its change: a retry after the workflow closed gets that state, not a 409."""
    uid = update_id(update, idempotency_key)
    return uid is not None and applied_digest(uid) in getattr(state, "applied_updates", ())


async def run_update(
    client: Client,
    workflow_id: str,
    update: UpdateMethodMultiParam[..., Result],
    arg: Any = None,
    *,
    patience: timedelta,
    on_closed: OnClosed,
    on_refusal: OnRefusal = conflict,
    idempotency_key: str | None = None,
    start: StartOperation | None = None,
    what: str = "order",
) -> Result:
    """Runs ``update`` (an update method of the workflow ``workflow_id``) and returns what it
    answers: the order (or, ``what="case"``/``"contact"``, the case or contact) as it now is.

    ``patience`` is UPDATE_TIMEOUT. ``idempotency_key``: the caller's, scoped to the Update it
    was sent with, is the Update's id: a retry gets the first outcome (see the module's
    docstring). ``on_closed``: the workflow has closed; what it answers is raised when an error,
    returned otherwise. ``start``: for a row whose workflow the relay may not have started
    yet, the Update goes with its start (update-with-start, USE_EXISTING), each attempt with
    a new operation.
    """
    args = [] if arg is None else [arg]
    # Without a key, one random id for all of this call's attempts: Temporal runs it once.
    uid = update_id(update, idempotency_key) or update_id(update, uuid.uuid4().hex)
    handle = client.get_workflow_handle(workflow_id)
    try:
        async with asyncio.timeout(patience.total_seconds()):
            while True:
                try:
                    if start is not None:
                        operation = start()
                        try:
                            return await client.execute_update_with_start_workflow(
                                update, args=args, start_workflow_operation=operation, id=uid
                            )
                        except WorkflowAlreadyStartedError:
                            # It ran and closed meanwhile: the plain Update below says how it
                            # ended. (The operation holds the same error for its handle.)
                            with contextlib.suppress(WorkflowAlreadyStartedError):
                                await operation.workflow_handle()
                    return await handle.execute_update(update, args=args, id=uid)
                except RPCError as err:
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
                    status = await workflow_status(client, workflow_id)
                    # Not started yet: its start goes with the next attempt.
                    pending = status is None and start is not None
                    if status != _RUNNING and not pending:
                        raise  # closed (or gone): on_closed answers
                # Running, yet the server lost the Update: it says a retry recreates it.
                await asyncio.sleep(_LOST_UPDATE_PAUSE)
    except TimeoutError:
        raise Unavailable(
            f"the {what} did not answer within {patience.total_seconds():g} s; the change may "
            f"still happen: GET the {what} to see, or retry with the same Idempotency-Key",
            code=f"{what}_busy",
        ) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type:
            details = cause.details[0] if cause.details else None
            raise on_refusal(cause.type, cause.message, details) from None
        raise
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    answer = await on_closed()
    if isinstance(answer, ApiError):
        raise answer
    return answer  # type: ignore[no-any-return]


# Between the attempts of an Update the server lost (NOT_FOUND while the workflow runs).
_LOST_UPDATE_PAUSE = 0.2
_RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


async def answered(session: AsyncSession, row: Order, answer: OrderState) -> OrderState:
    """The order as an Update of its workflow left it (``answer``), in the read model before
    the caller hears of it. An answer that carries its projection (``UpdateAnswer``) is
    written here, by version, as the workflow's own write of it: whichever lands second
    changes nothing. An answer given after its projection gets its items and metadata from the
    row; the row's own state (the workflow had closed) is taken as it is."""
    if isinstance(answer, UpdateAnswer) and answer.new_events is not None:
        state = await write_projection(await session.connection(), answer.projection())
        await session.commit()
        return state
    if answer.items:
        return answer
    await session.refresh(row)
    return whole_answer(answer, OrderState.model_validate(row.state))
