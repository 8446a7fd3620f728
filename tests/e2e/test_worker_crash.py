"""A worker killed in the middle of a print submission: still exactly one job at the facility.

Real processes: the Temporal dev server, the API, the worker and the facility simulator. The
simulator records the job and then takes 4 seconds to answer, as if the response got lost; the
worker is SIGKILLed while it waits. The restarted worker retries with the same Idempotency-Key.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.__main__ import example_order
from devstack.stack import SimulatorOptions, Stack, StackConfig
from tests.helpers.polling import poll

pytestmark = pytest.mark.e2e


def test_a_worker_killed_during_submission_still_yields_one_job(tmp_path: Path) -> None:
    facilities = tmp_path / "facilities.json"
    config = StackConfig.ephemeral(
        tmp_path / "stack",
        facilities_file=facilities,
        simulator=SimulatorOptions(report_events=False, response_delay=4),
        env={"PRINTFLOW_PRINT_SUBMIT_TIMEOUT": "6", "PRINTFLOW_PREFLIGHT": "on"},
    )
    stack = Stack(config)
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
    with stack, httpx.Client(timeout=10) as http:
        merchant = stack.create_merchant("Crash Shop", "support@crash.example.com")
        key = {"X-API-Key": merchant["api_key"]}
        # Its print file is the simulator's sample, so the preflight check passes it.
        body = example_order(stack.simulator_url) | {"order_reference_id": "CRASH-1"}
        created = http.post(f"{stack.api_url}/v1/orders", json=body, headers=key)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]

        def requests_for_order() -> list[dict[str, Any]]:
            rows = http.get(f"{stack.simulator_url}/_control/requests").json()
            return [r for r in rows if r["order_id"] == order_id]

        # The submission is in flight: the facility has the request and is slow to answer.
        poll("the print job to reach the facility", requests_for_order, timeout=30)
        assert stack.kill_worker(signal.SIGKILL) == -signal.SIGKILL
        jobs = [
            j
            for j in http.get(f"{stack.simulator_url}/print-jobs").json()
            if j["order_id"] == order_id
        ]
        assert len(jobs) == 1, "the facility accepted the job before the crash"
        assert (
            http.get(f"{stack.api_url}/v1/orders/{order_id}", headers=key).json()["status"]
            == "scheduled"
        )

        stack.start_worker()

        def in_production() -> dict[str, Any] | None:
            order = http.get(f"{stack.api_url}/v1/orders/{order_id}", headers=key).json()
            return order if order["status"] == "in_production" else None

        order = poll("the order to reach production after the restart", in_production, timeout=60)
        jobs = [
            j
            for j in http.get(f"{stack.simulator_url}/print-jobs").json()
            if j["order_id"] == order_id
        ]
        assert len(jobs) == 1, "never a second job for one order"
        assert order["job_id"] == jobs[0]["job_id"]
        assert len(requests_for_order()) >= 2, "the restarted worker did submit again"
        assert {r["idempotency_key"] for r in requests_for_order()} == {order_id}
