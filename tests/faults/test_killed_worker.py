"""The worker SIGKILLed again and again while orders run to delivery and one is canceled.

A kill can land anywhere: after a projection and before its workflow task completed, in the
middle of a print submission, between a facility's report and its projection. Whatever it hit,
once the worker is back the API, the workflow and the facility agree, every produced order has
exactly one job, the canceled one none, and each timeline counts up without gaps or repeats.

Real processes: the Temporal dev server, the API, the worker (killed and restarted) and the
facility simulator, which reports printed, shipped and delivered on its own.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import SimulatorOptions
from tests.helpers.api import order_json
from tests.helpers.faults import (
    Observer,
    assert_truthful,
    facility_jobs,
    fault_stack,
    wait_for,
    workflow_state,
)

pytestmark = pytest.mark.e2e

CUTOFF_EVERY = 6  # seconds
ORDERS = 4


def test_orders_survive_a_worker_killed_five_times(tmp_path: Path) -> None:
    simulator = SimulatorOptions(
        report_events=True, printed_after=1, shipped_after=1, delivered_after=1
    )
    with (
        fault_stack(tmp_path, every_seconds=CUTOFF_EVERY, simulator=simulator) as stack,
        httpx.Client(timeout=30) as http,
    ):
        key = {"X-API-Key": stack.create_merchant("Chaos Shop", "help@chaos.test")["api_key"]}
        time.sleep(CUTOFF_EVERY - time.time() % CUTOFF_EVERY + 0.2)
        ids = [
            http.post(
                f"{stack.api_url}/v1/orders", json=order_json(f"CHAOS-{n}"), headers=key
            ).json()["id"]
            for n in range(ORDERS)
        ]
        canceled_id = ids[-1]

        with Observer(stack.api_url, key) as observer:
            for order_id in ids:
                observer.watch(order_id)
            # A cancel racing the kills: sent in the background, answered 200, 409 or 503.
            answers: list[int] = []
            canceler = threading.Thread(
                target=lambda: answers.append(
                    http.post(
                        f"{stack.api_url}/v1/orders/{canceled_id}/cancel",
                        json={},
                        headers=key | {"Idempotency-Key": "chaos-cancel"},
                    ).status_code
                )
            )
            canceler.start()
            for pause in (0.7, 1.5, 2.3, 1.1, 2.9):
                time.sleep(pause)
                stack.kill_worker()
                stack.start_worker()
            canceler.join(timeout=30)
            assert answers and answers[0] in (200, 409, 503), answers

            def done() -> Any:
                statuses = [
                    http.get(f"{stack.api_url}/v1/orders/{i}", headers=key).json()["status"]
                    for i in ids
                ]
                return all(s in ("delivered", "canceled") for s in statuses) and statuses

            # Tasks of a killed worker wait for their timeouts; a busy machine adds retries.
            statuses = wait_for("every order to be delivered or canceled", done, timeout=240)
            time.sleep(1)

        assert statuses[:-1] == ["delivered"] * (ORDERS - 1), statuses
        for order_id in ids:
            order = assert_truthful(stack, key, order_id, observer.seen[order_id])
            state = workflow_state(stack, order_id)
            seqs = [e["at"] for e in order["events"]]
            assert len(order["events"]) == state.event_seq, "one timeline entry per change"
            assert seqs == sorted(seqs), "the timeline is in order"
            jobs = facility_jobs(stack, order_id)
            if order["status"] == "delivered":
                assert len(jobs) == 1, jobs
                types = [e["type"] for e in order["events"]]
                assert types.count("printed") == 1 and types.count("delivered") == 1, types
            else:
                assert jobs == [], jobs
