"""Records the committed delivery-workflow history.

Run ``.venv/bin/python -m tests.webhooks.record_history``.

Re-record only on purpose (a deliberate, versioned change to the workflow): ``test_replay.py``
exists to catch accidental non-determinism against this file. The run covers the paths that
matter: an event refused for 25 hours and given up, the next one delivered, the idle end.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, create_tables
from domain.orders import Status, TimelineEvent, new_state
from tests.conftest import TEMPORAL_TEST_SERVER
from tests.webhooks.conftest import running_delivery
from tests.workflows.support import order_input
from workflows.webhook_messages import delivery_workflow_id

HISTORY = Path(__file__).parent / "histories" / "webhook_delivery_gave_up.json"


async def record() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER, data_converter=pydantic_data_converter
    )
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/record.db")
        await create_tables(engine)
        try:
            async with running_delivery(env, engine) as delivery:
                now = await env.get_current_time()
                state = new_state(order_input(now))
                state.merchant_id, state.status = delivery.merchant_id, Status.DELIVERED
                events = [
                    TimelineEvent(seq=5, at=now, type="printed", status="printed"),
                    TimelineEvent(seq=6, at=now, type="delivered", status="delivered"),
                ]
                ids = await delivery.emitter.order_changed(state, events)
                delivery.receiver.fail_events = {ids[0]}
                handle = env.client.get_workflow_handle(delivery_workflow_id(state.order_id))
                async with env.time_skipping_unlocked():  # type: ignore[attr-defined]
                    await handle.result()
                history = await handle.fetch_history()
                assert delivery.receiver.accepted_ids() == [ids[1]]
            HISTORY.parent.mkdir(exist_ok=True)
            HISTORY.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        finally:
            await engine.dispose()
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
