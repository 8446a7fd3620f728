"""Temporal down while merchants create and cancel, and the API killed before it could start a
single workflow: every order answered 201 gets its workflow, a cancel answered 503 is applied
once when retried, and nothing is printed that the API shows canceled.

Real processes: the Temporal dev server (stopped, then started again on its database file), the
API (SIGKILLed, then started again), the worker and the facility simulator. Before this was
fixed, a create with Temporal down committed the row and answered 500, and the order stayed in
the read model without a workflow.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.api import order_json
from tests.helpers.faults import assert_truthful, facility_jobs, fault_stack, wait_for

pytestmark = pytest.mark.e2e

CUTOFF_EVERY = 30  # seconds; the outage below takes about ten


def test_orders_created_while_temporal_is_down_all_get_their_workflow(tmp_path: Path) -> None:
    with (
        fault_stack(tmp_path, every_seconds=CUTOFF_EVERY) as stack,
        httpx.Client(timeout=30) as http,
    ):
        key = {"X-API-Key": stack.create_merchant("Outage Shop", "help@outage.test")["api_key"]}
        # Start just after a cutoff, so the next one comes after the outage is over.
        time.sleep(CUTOFF_EVERY - time.time() % CUTOFF_EVERY + 0.5)
        stack.stop_process("temporal")

        ids = []
        for n in range(3):
            sent = time.monotonic()
            created = http.post(
                f"{stack.api_url}/v1/orders", json=order_json(f"DOWN-{n}"), headers=key
            )
            took = time.monotonic() - sent
            assert created.status_code == 201, created.text
            assert took < 2, f"create waited {took:.1f} s for a Temporal that is down"
            ids.append(created.json()["id"])
        shown = http.get(f"{stack.api_url}/v1/orders/{ids[1]}", headers=key)
        assert shown.status_code == 200 and shown.json()["status"] == "scheduled"

        cancel = http.post(
            f"{stack.api_url}/v1/orders/{ids[1]}/cancel",
            json={"reason": "customer changed their mind"},
            headers=key | {"Idempotency-Key": "cancel-down-1"},
        )
        assert cancel.status_code == 503, cancel.text
        assert cancel.json()["error"]["code"] in ("order_busy", "temporarily_unavailable")
        assert int(cancel.headers["Retry-After"]) >= 1

        # The API dies before it ever reached Temporal; then both come back.
        assert stack.kill("api", signal.SIGKILL) == -signal.SIGKILL
        stack.start_temporal()
        stack.start_api()

        retried = http.post(
            f"{stack.api_url}/v1/orders/{ids[1]}/cancel",
            json={"reason": "customer changed their mind"},
            headers=key | {"Idempotency-Key": "cancel-down-1"},
        )
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "canceled"

        def settled() -> Any:
            orders = [http.get(f"{stack.api_url}/v1/orders/{i}", headers=key).json() for i in ids]
            return [o["status"] for o in orders] == ["in_production", "canceled", "in_production"]

        wait_for("the orders to reach production (and the canceled one not)", settled, 60)
        for order_id in ids:
            assert_truthful(stack, key, order_id)
        assert len(facility_jobs(stack, ids[0])) == 1
        assert len(facility_jobs(stack, ids[2])) == 1
        assert facility_jobs(stack, ids[1]) == []
        timeline = http.get(f"{stack.api_url}/v1/orders/{ids[1]}", headers=key).json()["events"]
        assert [e["type"] for e in timeline].count("canceled") == 1
