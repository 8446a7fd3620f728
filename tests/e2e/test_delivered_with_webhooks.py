"""An order the simulated facility prints, ships and delivers, told to a real webhook receiver.

Real processes: the Temporal dev server, the API, the worker, the facility simulator (reporting
events back on its own) and the SMTP sink; the merchant's receiver runs in this test. The
receiver is down until the order is delivered: the order must not wait for it, and once it is
back it must get every event, each verified against the merchant's secret, in the order the
order went through them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.webhooks.emitter import SHIPMENT_CREATED, STATUS_UPDATED
from devstack.__main__ import example_order
from devstack.stack import SimulatorOptions, Stack, StackConfig
from tests.helpers.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    facilities = tmp_path / "facilities.json"
    stack = Stack(
        StackConfig.ephemeral(
            tmp_path / "stack",
            facilities_file=facilities,
            simulator=SimulatorOptions(printed_after=0.5, shipped_after=0.5, delivered_after=0.5),
            env={"PRINTFLOW_PREFLIGHT": "on"},
        )
    )
    facilities.write_text(
        json.dumps(
            [
                {
                    "id": "fast",
                    "name": "Fast Prints",
                    "timezone": "Europe/Berlin",
                    "countries": ["*"],
                    "api_url": stack.simulator_url,
                    "api_token": "tok-fast",
                    "schedule": {"every_seconds": 2},
                }
            ]
        )
    )
    # The stack is a synchronous process manager; the receiver lives in this event loop.
    await asyncio.to_thread(stack.start)
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


async def _poll(what: str, fetch: Any, timeout: float = 60) -> Any:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = await fetch()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_simulated_order_is_delivered_and_every_webhook_verifies(
    stack: Stack, receiver: Receiver
) -> None:
    merchant = await asyncio.to_thread(
        stack.create_merchant, "Hook Shop", "support@hooks.example.com", "auto", receiver.url
    )
    receiver.secret = merchant["webhook_secret"]
    receiver.fail_until = datetime.now(UTC) + timedelta(days=1)  # down until we say so
    key = {"X-API-Key": merchant["api_key"]}

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as http:
        # Its print file is the simulator's sample, so the preflight check passes it.
        order = example_order(stack.simulator_url) | {"order_reference_id": "HOOKS-1"}
        created = await http.post("/v1/orders", json=order, headers=key)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]

        async def delivered() -> dict[str, Any] | None:
            order = (await http.get(f"/v1/orders/{order_id}", headers=key)).json()
            return order if order["status"] == "delivered" else None

        order = await _poll("the simulated facility to deliver the order", delivered)
        # On a busy machine the first cutoff may come before the file's check ends: the order
        # then goes with the next one (``cutoff_postponed``).
        assert [e["type"] for e in order["events"] if e["type"] != "cutoff_postponed"] == [
            "created",
            "files_checked",
            "in_production",
            "printed",
            "shipment",
            "delivered",
        ]
        assert order["shipments"][0]["carrier"] == "DHL"
        # The order got there while its webhooks could not be delivered at all.
        assert receiver.requests and not receiver.accepted()

        receiver.fail_until = None  # the receiver is back

        def heard_delivery(r: Receiver) -> bool:
            return any(x.payload["data"].get("status") == "delivered" for x in r.accepted())

        # The first event waits for its next retry (10 s after the failure), the rest follow.
        await receiver.wait_for(heard_delivery, timeout=60)

        deliveries = (
            await http.get("/v1/webhooks/deliveries", params={"order_id": order_id}, headers=key)
        ).json()["data"]

    assert all(r.verified for r in receiver.requests), "every request carries a valid signature"
    accepted = [r.payload for r in receiver.accepted()]
    ids = [p["id"] for p in accepted]
    assert len(ids) == len(set(ids)), "each event accepted once"
    assert {r.event_id for r in receiver.requests} == set(ids), "every event tried got through"
    for event_id in ids:
        attempts = receiver.attempts_of(event_id)
        assert {a.body for a in attempts} == {attempts[0].body}, "retries send the same event"
        assert all(json.loads(a.body)["id"] == event_id for a in attempts)
    assert len(receiver.attempts_of(ids[0])) >= 2, "the first event was retried"

    statuses = [p["data"]["status"] for p in accepted if p["type"] == STATUS_UPDATED]
    assert statuses == ["in_production", "printed", "shipped", "delivered"]
    types = [(p["type"], p["data"].get("status")) for p in accepted]
    shipment_at = types.index((SHIPMENT_CREATED, None))
    assert types.index((STATUS_UPDATED, "shipped")) < shipment_at
    assert shipment_at < types.index((STATUS_UPDATED, "delivered"))
    assert {p["data"]["order"]["id"] for p in accepted} == {order_id}
    assert accepted[-1]["data"]["order"]["status"] == "delivered"

    outcomes = [d["outcome"] for d in deliveries if d["event_id"] == ids[0]]
    assert outcomes[0] == "succeeded" and "failed" in outcomes[1:], "the failures are on record"
