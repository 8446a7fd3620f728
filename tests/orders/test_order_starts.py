"""Create answers without Temporal; the relay starts every order it answered 201.

The real-process versions (the API killed before the start, Temporal down) are in tests/faults.
Here the relay itself: an order whose start failed stays in the outbox with the reason, and the
sweep of any API process starts it once Temporal answers again; an order can be canceled before
its workflow ever started.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select
from temporalio.client import Client

from api.relay import ORDERS, OrderStarter
from db.models import Order, OrderStart
from domain.orders import Status
from tests.conftest import suite_converter
from tests.helpers.api import Api, order_json, started
from tests.helpers.polling import apoll
from workflows.orders import OrderWorkflow


async def _outbox(api: Api) -> list[OrderStart]:
    async with api.app.state.sessions() as session:
        return list(await session.exec(select(OrderStart)))


async def _unreachable_temporal() -> Client:
    # Nothing listens there: every call fails, as with a Temporal server that is down.
    return await Client.connect("127.0.0.1:1", lazy=True, data_converter=suite_converter())


async def _created_while_temporal_is_down(api: Api, key: dict[str, str], reference: str) -> str:
    """An order answered 201 by an API process that cannot reach Temporal: its start waits in
    the outbox."""
    down = OrderStarter(api.app.state.sessions, await _unreachable_temporal(), api.settings)
    api.app.state.starter = down
    created = await api.client.post("/v1/orders", json=order_json(reference), headers=key)
    assert created.status_code == 201, created.text
    await down.close()
    return str(created.json()["id"])


async def _until_outbox_empty(api: Api) -> None:
    # Started rows are deleted in batches, a moment after their start.
    async def emptied() -> bool:
        return await _outbox(api) == []

    await apoll("the outbox to be emptied", emptied)


async def test_the_rows_of_many_starts_all_go(api: Api) -> None:
    key = Api.auth(await api.merchant())
    ids = []
    for n in range(10):
        created = await api.client.post("/v1/orders", json=order_json(f"BATCH-{n}"), headers=key)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for order_id in ids:
        await started(api.temporal.get_workflow_handle(order_id))
    await _until_outbox_empty(api)


async def test_the_start_row_is_gone_once_the_workflow_runs(api: Api) -> None:
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json("OUT-1"), headers=key)
    assert created.status_code == 201, created.text
    await started(api.temporal.get_workflow_handle(created.json()["id"]))
    await api.until(key, created.json()["id"], lambda o: True)
    await _until_outbox_empty(api)


async def test_a_failed_start_stays_in_the_outbox_until_a_sweep_starts_it(api: Api) -> None:
    key = Api.auth(await api.merchant())
    down = OrderStarter(api.app.state.sessions, await _unreachable_temporal(), api.settings)
    api.app.state.starter = down  # this API process cannot reach Temporal
    created = await api.client.post("/v1/orders", json=order_json("OUT-2"), headers=key)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    assert created.json()["status"] == "scheduled"
    await down.close()

    (waiting,) = await _outbox(api)
    assert waiting.order_id == order_id and waiting.last_error, "the reason is kept"

    # Later, in any API process that reaches Temporal, the sweep finds it due and starts it.
    async with api.app.state.sessions() as session:
        row = await session.get(OrderStart, order_id)
        assert row is not None
        row.due_at = datetime.now(UTC) - timedelta(seconds=1)
        await session.commit()
    up = OrderStarter(api.app.state.sessions, api.temporal, api.settings)
    # This sweep starts it, or the API's own sweep (every 2 s) was a moment quicker: either
    # way the workflow runs once (below), and no sweep starts it again.
    await up.sweep()
    described = await started(api.temporal.get_workflow_handle(order_id))
    assert described.id == order_id
    await _until_outbox_empty(api)
    assert await up.sweep() == 0, "nothing twice"


async def test_an_order_can_be_canceled_before_its_workflow_ever_started(api: Api) -> None:
    key = Api.auth(await api.merchant())
    order_id = await _created_while_temporal_is_down(api, key, "OUT-3")
    assert len(await _outbox(api)) == 1

    # The cancel carries the start with it (update-with-start): one round trip, one workflow.
    canceled = await api.client.post(f"/v1/orders/{order_id}/cancel", json={}, headers=key)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    state = await api.temporal.get_workflow_handle_for(OrderWorkflow.run, order_id).result()
    assert state.status is Status.CANCELED
    await api.until(key, order_id, lambda o: o["status"] == "canceled")
    # Its start request is still queued (this process could not reach Temporal): a second
    # cancel still gets the order's own answer, not an error about starting it.
    assert len(await _outbox(api)) == 1
    again = await api.client.post(f"/v1/orders/{order_id}/cancel", json={}, headers=key)
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "order_canceled"


async def test_a_start_handed_over_by_create_never_starts_a_closed_order_again(api: Api) -> None:
    """Create hands its start to the relay without a read back (``start_soon(id, start)``). If
    an update-with-start ran first and the order closed, that start finds it and starts
    nothing: one run, still canceled."""
    key = Api.auth(await api.merchant())
    order_id = await _created_while_temporal_is_down(api, key, "OUT-4")
    canceled = await api.client.post(f"/v1/orders/{order_id}/cancel", json={}, headers=key)
    assert canceled.json()["status"] == "canceled", canceled.text
    handle = api.temporal.get_workflow_handle(order_id)
    await handle.result()
    first_run = (await handle.describe()).run_id

    async with api.app.state.sessions() as session:
        row, outbox = await session.get(Order, order_id), await session.get(OrderStart, order_id)
        assert row is not None and outbox is not None
        given = ORDERS.start(api.settings, row, outbox)
    late = OrderStarter(api.app.state.sessions, api.temporal, api.settings)
    late.start_soon(order_id, given)
    await late.close()

    runs = [r async for r in api.temporal.list_workflows(f"WorkflowId = '{order_id}'")]
    assert [r.run_id for r in runs] == [first_run]
    assert (await handle.describe()).run_id == first_run
    await api.until(key, order_id, lambda o: o["status"] == "canceled")
    await _until_outbox_empty(api)  # the workflow ran: its start request is done
