"""Records the committed replay histories: ``.venv/bin/python -m tests.histories.record``.

Re-record only on purpose (a deliberate, versioned change to the workflow); the replay test
exists to catch accidental non-determinism against these files.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from domain.orders import (
    HoldResolution,
    ProductionEventIn,
)
from tests.conftest import TEMPORAL_TEST_SERVER
from tests.workflows.support import Recorder, order_body, order_input, order_worker, sleep_until
from workflows.client import ensure_search_attributes
from workflows.order import OrderWorkflow
from workflows.order_messages import PersonalizationSubmission, ProductionSignal

HERE = Path(__file__).parent
ITEMS = [
    {
        "item_reference_id": "mug-1",
        "product_uid": "mug_11oz_white",
        "quantity": 1,
        "files": [{"type": "default", "url": "https://files.example/mug.png"}],
        "personalization": {
            "fields": [{"name": "name", "label": "Name", "type": "text", "required": True}]
        },
    }
]


async def _signal(env: WorkflowEnvironment, handle: object, kind: str, **extra: object) -> None:
    event = ProductionEventIn.model_validate(
        {"event_id": uuid.uuid4().hex, "order_id": handle.id, "type": kind, **extra}  # type: ignore[attr-defined]
    )
    await handle.signal(  # type: ignore[attr-defined]
        OrderWorkflow.facility_event,
        ProductionSignal(event=event, received_at=await env.get_current_time()),
    )


async def record() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER, data_converter=pydantic_data_converter
    )
    await ensure_search_attributes(env.client, "default")
    try:
        async with order_worker(env.client, Recorder()) as tq:
            inp = order_input(await env.get_current_time(), body=order_body(items=ITEMS))
            handle = await env.client.start_workflow(
                OrderWorkflow.run, inp, id=inp.order_id, task_queue=tq
            )
            await sleep_until(env, inp.received_at + timedelta(days=8))  # two links
            state = await handle.query(OrderWorkflow.order)
            await handle.execute_update(
                OrderWorkflow.complete_personalization,
                PersonalizationSubmission(
                    link_id=state.link_id or "", values={"mug-1": {"name": "Ada"}}
                ),
            )
            state = await handle.query(OrderWorkflow.order)
            assert state.cutoff_at is not None
            await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
            await _signal(
                env, handle, "issue", issue={"kind": "file_quality", "description": "blurry"}
            )
            await env.sleep(timedelta(days=1, minutes=1))
            await handle.execute_update(
                OrderWorkflow.resolve_hold, HoldResolution(action="proceed")
            )
            await _signal(env, handle, "printed")
            await _signal(env, handle, "delivered")  # out of order: recorded, ignored
            tracking = {
                "carrier": "DHL",
                "tracking_code": "PKG1",
                "tracking_url": "https://t.example/1",
            }
            await _signal(env, handle, "shipped", tracking=tracking)
            await _signal(env, handle, "delivered")
            await handle.result()
            history = await handle.fetch_history()
        (HERE / "order_full_lifecycle.json").write_text(
            json.dumps(json.loads(history.to_json()), indent=1) + "\n"
        )
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
