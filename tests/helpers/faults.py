"""Real processes and the one invariant every fault test checks.

``fault_stack`` runs the Temporal dev server, the API, a worker and the facility simulator as
separate processes (``devstack.Stack``; several API processes and workers on a shared database
if asked) with one facility that cuts off every few seconds and
the short task and update timeouts that make stalls quick to reproduce. ``Observer`` reads an
order's status again and again in the background, so a change that shows for a moment and then
disappears is caught. ``assert_truthful`` is the promise: what the API shows is what the
workflow holds, a ``canceled`` order was never printed, and no order has two jobs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from devstack.processes import TLS
from devstack.stack import SimulatorOptions, Stack, StackConfig
from domain.orders import OrderState
from tests.conftest import suite_converter
from workflows.orders import OrderWorkflow

FACILITY_TOKEN = "tok-fault"
# What the apps run with in these tests: short enough that a stall is over in seconds.
FAULT_ENV = {
    "PRINTFLOW_UPDATE_TIMEOUT": "3",
    "PRINTFLOW_WORKFLOW_TASK_TIMEOUT": "2",
    "PRINTFLOW_START_SWEEP_AFTER": "1",
    "PRINTFLOW_LOG_LEVEL": "WARNING",
    "PRINTFLOW_WORKER_METRICS_PORT": "0",
}


@contextmanager
def fault_stack(
    tmp_path: Path,
    *,
    every_seconds: int,
    simulator: SimulatorOptions | None = None,
    apis: int = 1,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """The stack with ``apis`` API processes and ``workers`` workers; ``env`` adds to (or
    overrides) ``FAULT_ENV``, e.g. ``PRINTFLOW_DATABASE_URL`` for a database they share."""
    facilities = tmp_path / "facilities.json"
    stack = Stack(
        StackConfig.ephemeral(
            tmp_path / "stack",
            facilities_file=facilities,
            simulator=simulator or SimulatorOptions(report_events=False),
            apis=apis,
            workers=workers,
            env={**FAULT_ENV, **(env or {})},
        )
    )
    facilities.write_text(
        json.dumps(
            [
                {
                    "id": "faulty",
                    "name": "Faulty Prints",
                    "timezone": "Europe/Berlin",
                    "countries": ["*"],
                    "api_url": stack.simulator_url,
                    "api_token": FACILITY_TOKEN,
                    "schedule": {"every_seconds": every_seconds},
                }
            ]
        )
    )
    with stack:
        yield stack


class Observer:
    """Reads orders through the API every ``interval`` seconds and keeps every status seen."""

    def __init__(self, api_url: str, key: dict[str, str], interval: float = 0.1) -> None:
        self._api_url = api_url
        self._key = key
        self._interval = interval
        self._orders: list[str] = []
        self.seen: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, order_id: str) -> None:
        self._orders.append(order_id)
        self.seen.setdefault(order_id, [])

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(base_url=self._api_url, timeout=5, verify=TLS) as http:
            while not self._stop.is_set():
                for order_id in list(self._orders):
                    try:
                        response = http.get(f"/v1/orders/{order_id}", headers=self._key)
                    except httpx.HTTPError:
                        continue  # the API may be down on purpose
                    if response.status_code == 200:
                        status = response.json()["status"]
                        if not self.seen[order_id] or self.seen[order_id][-1] != status:
                            self.seen[order_id].append(status)
                time.sleep(self._interval)


def workflow_state(stack: Stack, order_id: str) -> OrderState:
    """The order as its workflow holds it (a query), read through a client of our own."""

    async def query() -> OrderState:
        client = await Client.connect(stack.temporal_address, data_converter=suite_converter())
        handle = client.get_workflow_handle_for(OrderWorkflow.run, order_id)
        return await handle.query(OrderWorkflow.order)

    return asyncio.run(query())


def instant(value: str | datetime | None) -> datetime | None:
    """A time as the API writes it (ISO 8601) or as a workflow holds it, as a datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def shown_and_held(
    order: dict[str, Any], state: OrderState
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the API shows of an order beside what its workflow holds, field by field: status,
    job, cancel reason, cutoff, last change and the number of timeline entries. A test adds
    the fields its faults touch to both sides, then compares them."""
    shown = {
        "status": order["status"],
        "job_id": order["job_id"],
        "cancel_reason": order["cancel_reason"],
        "cutoff_at": instant(order["cutoff_at"]),
        "updated_at": instant(order["updated_at"]),
        "timeline entries": len(order["events"]),
    }
    held = {
        "status": state.status.value,
        "job_id": state.job_id,
        "cancel_reason": state.cancel_reason,
        "cutoff_at": state.cutoff_at,
        "updated_at": state.updated_at,
        "timeline entries": state.event_seq,
    }
    return shown, held


def all_jobs(stack: Stack) -> list[dict[str, Any]]:
    """Every print job the facility has."""
    jobs: list[dict[str, Any]] = httpx.get(
        f"{stack.simulator_url}/print-jobs", timeout=10, verify=TLS
    ).json()
    return jobs


def facility_jobs(stack: Stack, order_id: str) -> list[dict[str, Any]]:
    """The print jobs the facility has for ``order_id``."""
    return [job for job in all_jobs(stack) if job["order_id"] == order_id]


def assert_truthful(
    stack: Stack, key: dict[str, str], order_id: str, seen: list[str] | None = None
) -> dict[str, Any]:
    """The API, the workflow and the facility agree about ``order_id``; returns the order."""
    order: dict[str, Any] = httpx.get(
        f"{stack.api_url}/v1/orders/{order_id}", headers=key, timeout=5, verify=TLS
    ).json()
    state = workflow_state(stack, order_id)
    assert order["status"] == state.status.value, (order["status"], state.status)
    assert order["updated_at"] and state.version >= 1
    jobs = facility_jobs(stack, order_id)
    timeline = [e["type"] for e in order["events"]]
    assert len(jobs) <= 1, f"two print jobs for one order: {jobs}"
    if "canceled" in (seen or []) or order["status"] == "canceled":
        # A cancel the API ever showed is final: nothing was printed, nothing will be.
        assert state.status.value == "canceled", (seen, state.status)
        assert jobs == [], f"a canceled order reached the facility: {jobs}"
        assert timeline.count("canceled") == 1, timeline
    if "canceled" in timeline:
        after = timeline[timeline.index("canceled") :]
        assert not {"in_production", "printed", "shipment", "delivered"} & set(after), timeline
    return order


def wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)
