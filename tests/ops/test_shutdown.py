"""SIGTERM drains a worker: the print submission in flight completes, once, before it exits.

Real processes: dev server, API, simulator and ``python worker.py``. The simulator takes four
seconds to answer the print job; the worker gets SIGTERM while it waits. It must wait for the
answer (not abandon the activity to a retry after its timeout), report the activity completed,
and exit 0 well within its grace period.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from devstack.stack import SimulatorOptions, Stack, StackConfig
from tests.helpers.api import order_json
from tests.helpers.polling import poll
from tests.ops.conftest import facility

pytestmark = pytest.mark.e2e

RESPONSE_DELAY = 4.0
GRACE = 15.0


async def _submission_attempts(address: str, order_id: str) -> list[int]:
    """Attempts of every completed ``submit_print_job`` in the order's history."""
    client = await Client.connect(address)
    history = await client.get_workflow_handle(order_id).fetch_history()
    scheduled: dict[int, str] = {}
    started: dict[int, int] = {}
    completed = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs_started = event.activity_task_started_event_attributes
            started[attrs_started.scheduled_event_id] = attrs_started.attempt
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            if scheduled.get(done.scheduled_event_id) == "submit_print_job":
                completed.append(started[done.scheduled_event_id])
    return completed


def test_sigterm_lets_the_print_submission_in_flight_finish_once(tmp_path: Path) -> None:
    facilities = tmp_path / "facilities.json"
    config = StackConfig.ephemeral(
        tmp_path / "stack",
        facilities_file=facilities,
        simulator=SimulatorOptions(report_events=False, response_delay=RESPONSE_DELAY),
        env={"PRINTFLOW_WORKER_SHUTDOWN_GRACE": f"{GRACE:g}"},
        stop_grace=GRACE + 15,  # the stack's SIGKILL must not beat the worker's own deadline
    )
    stack = Stack(config)
    facilities.write_text(json.dumps([facility(stack.simulator_url)]))

    with stack, httpx.Client(timeout=10) as http:
        key = {"X-API-Key": stack.create_merchant("Drain Shop", "ops@drain.example")["api_key"]}
        created = http.post(f"{stack.api_url}/v1/orders", json=order_json(), headers=key)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]

        def requests_for_order() -> list[dict[str, Any]]:
            rows = http.get(f"{stack.simulator_url}/_control/requests").json()
            return [r for r in rows if r["order_id"] == order_id]

        poll("the print job to reach the facility", requests_for_order, timeout=30)
        signalled = time.monotonic()
        status = stack.stop_worker()
        took = time.monotonic() - signalled

        assert status == 0, stack.log_tail("worker")
        assert took < GRACE, f"exited {took:.1f}s after SIGTERM, grace is {GRACE:g}s"
        assert took > RESPONSE_DELAY / 2, "it waited for the facility's answer"
        attempts = asyncio.run(_submission_attempts(stack.temporal_address, order_id))
        assert attempts == [1], "completed by the stopping worker, on the first attempt"
        assert "worker draining" in stack.log_path("worker").read_text()

        stack.start_worker()

        def in_production() -> dict[str, Any] | None:
            order = http.get(f"{stack.api_url}/v1/orders/{order_id}", headers=key).json()
            return order if order["status"] == "in_production" else None

        poll("the next worker to record the result", in_production, timeout=30)
        assert len(requests_for_order()) == 1, "the job was submitted once, never retried"
        assert len(http.get(f"{stack.simulator_url}/print-jobs").json()) == 1
