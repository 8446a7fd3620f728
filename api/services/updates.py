"""Asking an order's workflow to change: one Update, and its failures as the API's errors.

The workflow alone decides. A refusal from its validator (an ``ApplicationError`` whose type is
a refusal code) becomes a 409 with that code; nothing changed. A workflow that has closed
cannot answer, so its last projection says why nothing can change (``on_closed``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from api.errors import ApiError, Conflict
from domain.orders import OrderState

# An update method of OrderWorkflow, such as ``OrderWorkflow.cancel``.
OrderUpdate = UpdateMethodMultiParam[..., OrderState]
# What the caller raises when the workflow has closed (it reads the order's last state).
OnClosed = Callable[[], Awaitable[ApiError]]
# Turns a refusal (code, message, details) into the error the caller's users understand.
OnRefusal = Callable[[str, str, Any], ApiError]


def conflict(code: str, message: str, details: Any) -> ApiError:
    return Conflict(message, code=code)


async def run_update(
    client: Client,
    order_id: str,
    update: OrderUpdate,
    arg: Any = None,
    *,
    on_closed: OnClosed,
    on_refusal: OnRefusal = conflict,
) -> OrderState:
    """Runs ``update`` (an ``OrderWorkflow`` update method) and returns the order as it now is."""
    handle = client.get_workflow_handle(order_id)
    try:
        if arg is None:
            return await handle.execute_update(update)
        return await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type:
            details = cause.details[0] if cause.details else None
            raise on_refusal(cause.type, cause.message, details) from None
        raise
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise await on_closed() from None
