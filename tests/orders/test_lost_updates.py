"""A busy Temporal server can lose an Update it admitted (its Update registry cleared) and answer
NOT_FOUND for a workflow that still runs. The API must not take that for "the order has closed":
it asks again, with the same Update id, and the merchant gets what the workflow does.

The fault is injected where the API meets Temporal: a client interceptor makes the server's
first answers to an Update NOT_FOUND, as a loaded dev server did in a parallel test run. The
workflow, the server and the database are real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowUpdateInput,
    StartWorkflowUpdateWithStartInput,
    WorkflowUpdateHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.relay import OrderStarter
from domain.orders import Status
from tests.conftest import suite_converter
from tests.helpers.api import Api, order_json, running_api
from workflows.orders import OrderWorkflow


class LosesUpdates(Interceptor):
    """The server's answer to the first ``times`` Updates is NOT_FOUND ("update … wasn't found
    on server"), whatever the workflow's state. Records each Update id it was sent."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.ids: list[str | None] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Losing(next, self)


class _Losing(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, fault: LosesUpdates) -> None:
        super().__init__(next)
        self.fault = fault

    def _lose(self, update_id: str | None) -> None:
        self.fault.ids.append(update_id)
        if len(self.fault.ids) <= self.fault.times:
            raise RPCError(
                "update wasn't found on server; a retry recreates it", RPCStatusCode.NOT_FOUND, b""
            )

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        self._lose(input.update_id)
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(
        self, input: StartWorkflowUpdateWithStartInput
    ) -> WorkflowUpdateHandle[Any]:
        self._lose(input.update_workflow_input.update_id)
        return await super().start_update_with_start_workflow(input)


@pytest.fixture
async def losing(
    request: pytest.FixtureRequest,
    dev_env: WorkflowEnvironment,
    database_url: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[Api, LosesUpdates]]:
    fault = LosesUpdates(times=request.param)
    config = dev_env.client.config()
    config["interceptors"] = [fault]
    client = Client(**config)
    async with running_api(
        client, database_url, tmp_path, update_timeout=timedelta(seconds=3)
    ) as api:
        yield api, fault


async def _order(api: Api) -> tuple[dict[str, str], dict[str, Any]]:
    """A new merchant's key and a new order of theirs."""
    key = Api.auth(await api.merchant())
    order = (await api.client.post("/v1/orders", json=order_json(), headers=key)).json()
    return key, order


async def _cancel(api: Api, order: dict[str, Any], headers: dict[str, str]) -> Any:
    return await api.client.post(
        f"/v1/orders/{order['id']}/cancel", json={"reason": "duplicate"}, headers=headers
    )


@pytest.mark.parametrize("losing", [2], indirect=True)
@pytest.mark.parametrize("idempotency_key", [None, "cancel-lost-1"])
async def test_a_cancel_the_server_lost_is_sent_again_and_cancels(
    losing: tuple[Api, LosesUpdates], idempotency_key: str | None
) -> None:
    api, fault = losing
    key, order = await _order(api)
    headers = key | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})

    canceled = await _cancel(api, order, headers)

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    # Three attempts, one Update id: had the server kept the first, the others are the same one.
    assert len(fault.ids) == 3 and len(set(fault.ids)) == 1, fault.ids
    shown = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
    assert shown["status"] == "canceled"
    assert [e["type"] for e in shown["events"]] == ["created", "canceled"]


@pytest.mark.parametrize("losing", [10_000], indirect=True)
async def test_an_update_lost_until_the_patience_ends_is_a_503_not_a_closed_order(
    losing: tuple[Api, LosesUpdates],
) -> None:
    api, fault = losing
    key, order = await _order(api)

    refused = await _cancel(api, order, key)

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "order_busy"
    assert len(fault.ids) > 1
    shown = (await api.client.get(f"/v1/orders/{order['id']}", headers=key)).json()
    assert shown["status"] == "scheduled"


@pytest.mark.parametrize("losing", [1], indirect=True)
async def test_a_cancel_lost_before_the_workflow_ever_started_goes_again_with_its_start(
    losing: tuple[Api, LosesUpdates],
) -> None:
    # The relay could not start the workflow (Temporal unreachable from it): the cancel goes as
    # update-with-start, and the server loses it. The workflow does not exist, yet the order is
    # not closed: the cancel goes again, with its start.
    api, fault = losing
    unreachable = await Client.connect("127.0.0.1:1", lazy=True, data_converter=suite_converter())
    down = OrderStarter(api.app.state.sessions, unreachable, api.settings)
    api.app.state.starter = down
    key, order = await _order(api)
    await down.close()

    canceled = await _cancel(api, order, key)

    assert canceled.status_code == 200, canceled.text
    assert len(fault.ids) == 2 and len(set(fault.ids)) == 1, fault.ids
    state = await api.temporal.get_workflow_handle_for(OrderWorkflow.run, order["id"]).result()
    assert state.status is Status.CANCELED
    await api.until(key, order["id"], lambda o: o["status"] == "canceled")
