"""An order's history stays bounded however often it changes.

The report that started this: the projection's input was the whole order, and so was every
Update's answer, while the wait for the cutoff looped on itself after each address change and
never continued as new; a large order changed ~50 times could pass Temporal's history limit and
be terminated while the read model said ``scheduled``.

Here the order is as large as the API accepts (items near ``ITEMS_MAX_BYTES``, metadata near its
4000 characters), its address is changed 100 times through the API, and every run of its
workflow is read back. The dev server of this module suggests continue-as-new after 300 events
(``limit.historyCount.suggestContinueAsNew``; the default is some thousands), so the test sees
the suggestion taken while the order waits for its cutoff.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, session_factory
from db.models import Order
from domain.orders import ITEMS_MAX_BYTES, METADATA_MAX_CHARS
from tests.conftest import TEMPORAL_CLI, suite_converter
from tests.helpers.api import Api, order_json, running_api, started
from workflows import search_attributes
from workflows.orders import OrderWorkflow

SUGGEST_AFTER_EVENTS = 300
CHANGES = 100


@pytest.fixture(scope="module")
async def suggesting_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after ``SUGGEST_AFTER_EVENTS`` events."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_CLI,
        data_converter=suite_converter(),
        search_attributes=search_attributes.ALL,
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER_EVENTS}",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def api(
    suggesting_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    async with running_api(suggesting_env.client, database_url, tmp_path) as running:
        yield running


def large_order() -> dict[str, Any]:
    """An order near every size cap: 100 items whose files fill ``ITEMS_MAX_BYTES`` and
    metadata near its 4000 characters. Shipped to Germany: printed at midnight, so it stays
    scheduled (and editable) for the whole test."""
    body = order_json()
    item = body["items"][0]
    body["items"] = [
        item
        | {
            "item_reference_id": f"item-{i:03d}",
            "files": [
                {"type": f"page-{f}", "url": f"https://files.example/{i}/{f}/" + "p" * 450}
                for f in range(3)
            ],
        }
        for i in range(100)
    ]
    body["metadata"] = {"notes": ["n" * 90 for _ in range(40)], "crm": {"id": "CRM-1"}}
    assert METADATA_MAX_CHARS - 300 < len(str(body["metadata"])) <= METADATA_MAX_CHARS
    items_size = len(json.dumps(body["items"], separators=(",", ":")))
    assert ITEMS_MAX_BYTES * 0.9 < items_size <= ITEMS_MAX_BYTES, items_size
    return body


async def runs_of(client: Client, workflow_id: str, first_run_id: str) -> list[list[int]]:
    """Every run of the workflow, oldest first, as the sizes in bytes of its events."""
    runs: list[list[int]] = []
    run_id: str | None = first_run_id
    while run_id is not None:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append([e.ByteSize() for e in history.events])
        last = history.events[-1]
        run_id = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs


async def test_a_large_order_changed_100_times_keeps_a_small_history(api: Api) -> None:
    key = Api.auth(await api.merchant())
    body = large_order()
    created = await api.client.post("/v1/orders", json=body, headers=key)
    assert created.status_code == 201, created.text[:300]
    order_id = created.json()["id"]
    handle = api.temporal.get_workflow_handle(order_id)
    first_run_id = (await started(handle)).run_id

    answer: dict[str, Any] = {}
    for n in range(CHANGES):
        address = dict(body["shipping_address"], address_line_1=f"Unter den Linden {n + 2}")
        moved = await api.client.put(
            f"/v1/orders/{order_id}/shipping-address", json=address, headers=key
        )
        assert moved.status_code == 200, moved.text[:300]
        answer = moved.json()
        assert answer["shipping_address"]["address_line_1"] == address["address_line_1"]
        if n == 0:
            # The answer is the whole order, as ever: the API fills in what the workflow's
            # answer leaves out (items, metadata) from the read model.
            assert answer["metadata"] == body["metadata"]
            shown = [
                [{"type": f["type"], "url": f["url"]} for f in i["files"]] for i in answer["items"]
            ]
            assert shown == [i["files"] for i in body["items"]]
    read = await api.client.get(f"/v1/orders/{order_id}", headers=key)
    assert read.json() == answer, "the last answer is the order as the API shows it"
    assert answer["status"] == "scheduled"

    runs = await runs_of(api.temporal, order_id, first_run_id)
    sizes = [sum(run) for run in runs]
    assert len(runs) > 1, "Temporal suggested continue-as-new and the wait for the cutoff took it"
    for events in runs:
        # The suggestion comes with a workflow task; the run ends after the change in progress.
        assert len(events) < SUGGEST_AFTER_EVENTS + 60, [len(r) for r in runs]
    # Far below Temporal's limits (a warning at 10 MB, termination at 50 MB): a run carries the
    # order a few times (its input, its first projection, the input of the next run), each
    # change a few kilobytes (an Update's answer and projection without items and metadata).
    assert max(sizes) < 2 * 1024 * 1024, sizes
    assert max(max(run) for run in runs) < 512 * 1024
    carrying_the_order = [size for run in runs for size in run if size > 64 * 1024]
    assert len(carrying_the_order) <= 3 * len(runs)
    per_change = (sum(sizes) - sum(carrying_the_order)) / CHANGES
    assert per_change < 16 * 1024, (per_change, sizes)

    # The read model ends equal to the workflow's state.
    state = await handle.query(OrderWorkflow.order)
    engine = create_engine(api.settings.database_url)
    try:
        async with session_factory(engine)() as session:
            row = (await session.exec(select(Order).where(Order.id == order_id))).one()
    finally:
        await engine.dispose()
    assert row.state == state.model_dump(mode="json")
    assert row.version == state.version
