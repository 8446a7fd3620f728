"""A facility that answers 503 and 429, or refuses a job with a 4xx: one job or none, never two,
and a refusal waits for a person instead of being retried forever.

Real processes: the Temporal dev server, the API, the worker and the facility simulator, whose
``/_control`` endpoints stage the failures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.api import order_json
from tests.helpers.faults import assert_truthful, facility_jobs, fault_stack, wait_for

pytestmark = pytest.mark.e2e

CUTOFF_EVERY = 4  # seconds


def test_a_busy_facility_gets_the_job_once_and_a_refusing_one_holds_the_order(
    tmp_path: Path,
) -> None:
    with (
        fault_stack(tmp_path, every_seconds=CUTOFF_EVERY) as stack,
        httpx.Client(timeout=30) as http,
    ):
        key = {"X-API-Key": stack.create_merchant("Busy Shop", "help@busy.test")["api_key"]}
        sim = stack.simulator_url

        def order(order_id: str) -> dict[str, Any]:
            return dict(http.get(f"{stack.api_url}/v1/orders/{order_id}", headers=key).json())

        # Right after a cutoff, so the staging below happens before the next one.
        time.sleep(CUTOFF_EVERY - time.time() % CUTOFF_EVERY + 0.2)
        busy = http.post(f"{stack.api_url}/v1/orders", json=order_json("BUSY-1"), headers=key)
        refused = http.post(f"{stack.api_url}/v1/orders", json=order_json("NO-1"), headers=key)
        busy_id, refused_id = busy.json()["id"], refused.json()["id"]
        assert http.post(f"{sim}/_control/reject-order", json={"order_id": refused_id}).is_success
        # The next three submissions fail as an overloaded facility answers.
        assert http.post(f"{sim}/_control/fail-next", json={"status": 503, "count": 2}).is_success

        wait_for(
            "the busy facility to take the job",
            lambda: order(busy_id)["status"] == "in_production",
            timeout=60,
        )
        held = wait_for(
            "the refused order to go on hold",
            lambda: order(refused_id)["status"] == "on_hold" and order(refused_id),
            timeout=60,
        )
        assert held["hold"]["kind"] == "facility_rejected"
        assert "422" in held["hold"]["description"]
        assert facility_jobs(stack, refused_id) == []
        attempts = [
            r for r in http.get(f"{sim}/_control/requests").json() if r["order_id"] == refused_id
        ]
        assert [r["status"] for r in attempts].count(422) == 1, "a refusal is not retried"
        busy_requests = [
            r for r in http.get(f"{sim}/_control/requests").json() if r["order_id"] == busy_id
        ]
        assert {r["idempotency_key"] for r in busy_requests} == {busy_id}
        assert len(facility_jobs(stack, busy_id)) == 1

        # The merchant asks the facility again once it is fixed: one job.
        assert http.delete(f"{sim}/_control/reject-order/{refused_id}").is_success
        answer = http.post(
            f"{stack.api_url}/v1/orders/{refused_id}/resolve-hold",
            json={"action": "proceed"},
            headers=key,
        )
        assert answer.status_code == 200, answer.text
        wait_for(
            "the released order to reach production",
            lambda: order(refused_id)["status"] == "in_production",
            timeout=60,
        )
        for order_id in (busy_id, refused_id):
            assert_truthful(stack, key, order_id)
            assert len(facility_jobs(stack, order_id)) == 1
