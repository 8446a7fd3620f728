"""An Update answers with the projection of its change, and the API writes it before it answers.

The merchant waits for one workflow task: the task that accepts a cancel also completes it and
schedules the projection's activity, and the API writes the same projection to the read model
(``contracts.orders.UpdateAnswer``). Here the worker's own write of the cancel is held until the
merchant has had the answer and read the order: both show the cancel, and the write that comes
after changes nothing. The workflow, the server and the database are real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from contracts.orders import Projection
from db.models import Order, OrderEvent
from domain.orders import OrderState, Status
from tests.helpers.api import Api, order_json, running_api, started
from tests.helpers.polling import eventually


class HoldsProjections(Interceptor):
    """Holds the worker's ``project_order`` activities whose newest event is ``event`` until
    ``release`` is set; counts them held and written."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.release = asyncio.Event()
        self.held = 0
        self.written = 0

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Holding(next, self)


class _Holding(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, hold: HoldsProjections) -> None:
        super().__init__(next)
        self.hold = hold

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        projection = input.args[0] if input.args else None
        if not isinstance(projection, Projection) or not projection.new_events:
            return await super().execute_activity(input)
        if projection.new_events[-1].type != self.hold.event:
            return await super().execute_activity(input)
        self.hold.held += 1
        await self.hold.release.wait()
        result = await super().execute_activity(input)
        self.hold.written += 1
        return result


async def test_a_cancel_is_shown_at_once_while_the_workflow_still_writes_it(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    hold = HoldsProjections("canceled")
    async with running_api(
        dev_env.client, database_url, tmp_path, worker_interceptors=[hold]
    ) as api:
        key = Api.auth(await api.merchant())
        order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
        handle = api.temporal.get_workflow_handle(order["id"], result_type=OrderState)
        await started(handle)

        canceled = await api.client.post(
            f"/v1/orders/{order['id']}/cancel", json={"reason": "duplicate"}, headers=key
        )

        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        assert [e["type"] for e in canceled.json()["events"]] == ["created", "canceled"]
        # The answer carries the order whole: items and metadata from the row.
        assert canceled.json()["items"] == order["items"]
        await eventually("the workflow's write to be held", lambda: hold.held == 1)
        assert hold.written == 0
        shown = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
        assert shown == canceled.json()

        hold.release.set()
        # The workflow closes once its own write is done; it changed nothing.
        closed = await handle.result()
        assert hold.written == 1
        assert closed.status is Status.CANCELED
        async with api.app.state.sessions() as session:
            row = await session.get(Order, order["id"])
            assert row is not None and row.version == closed.version
            counted = await session.exec(
                select(func.count())
                .select_from(OrderEvent)
                .where(col(OrderEvent.order_id) == order["id"])
            )
            assert counted.one() == 2
        again = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
        assert again == canceled.json()
