"""Real processes for the worker fault tests, and the invariant they all check.

``fault_stack`` starts the Temporal dev server, the API, a worker and the facility simulator as
separate processes (``devstack.Stack``) with one facility that cuts off every few seconds, and
with short update and workflow-task timeouts so that a stall is over in seconds.

``Observer`` reads orders through the API again and again in the background and keeps every
status it saw, so a change the API showed for a moment and then took back is caught.

``assert_consistent`` is the promise of docs/api.md, "Truth under faults": the read model says
what the workflow holds, an order the API ever showed as ``canceled`` is canceled for good and
never reached the facility, no order has two print jobs, and a timeline counts up one by one
and never goes on after ``canceled``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from devstack.processes import TLS
from devstack.stack import SimulatorOptions, Stack, StackConfig
from domain.orders import Hold, OrderState
from tests.conftest import suite_converter
from tests.helpers.faults import facility_jobs, instant, shown_and_held
from workflows.orders import OrderWorkflow

UPDATE_TIMEOUT = 3  # seconds an Update waits before the API answers 503 order_busy
TASK_TIMEOUT = 2  # seconds: the workflow task timeout of every new order
FAULT_ENV = {
    "PRINTFLOW_UPDATE_TIMEOUT": str(UPDATE_TIMEOUT),
    "PRINTFLOW_WORKFLOW_TASK_TIMEOUT": str(TASK_TIMEOUT),
    "PRINTFLOW_LOG_LEVEL": "INFO",
    # Restarted workers, and other stacks on this machine, must not fight over :9464.
    "PRINTFLOW_WORKER_METRICS_PORT": "0",
}
PRODUCED = ("in_production", "printed", "shipped", "delivered")
# The status each of these timeline entries moves an order to.
MOVES_TO = {
    "canceled": "canceled",
    "in_production": "in_production",
    "printed": "printed",
    "shipment": "shipped",
    "delivered": "delivered",
}
# What a canceled order's timeline may never go on with.
NOT_AFTER_CANCEL = {"in_production", "printed", "shipment", "delivered"}

StartStack = Callable[..., Stack]
Timeline = tuple[tuple[str, str], ...]  # (type, at) of each entry, oldest first


def timeline_of(order: dict[str, Any]) -> Timeline:
    return tuple((e["type"], e["at"]) for e in order["events"])


@pytest.fixture
def fault_stack(tmp_path: Path) -> Iterator[StartStack]:
    """``fault_stack(every_seconds=20, simulator=...)`` starts a stack; it stops after the test."""
    with ExitStack() as running:

        def start(*, every_seconds: int, simulator: SimulatorOptions) -> Stack:
            facilities = tmp_path / "facilities.json"
            stack = Stack(
                StackConfig.ephemeral(
                    tmp_path / "stack",
                    facilities_file=facilities,
                    simulator=simulator,
                    env=FAULT_ENV,
                )
            )
            facility = {
                "id": "faulty",
                "name": "Faulty Prints",
                "timezone": "Europe/Berlin",
                "countries": ["*"],
                "api_url": stack.simulator_url,
                "api_token": "tok-faulty",
                "schedule": {"every_seconds": every_seconds},
            }
            facilities.write_text(json.dumps([facility]))
            return running.enter_context(stack)

        yield start


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """``check()`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def wait_until_settled(
    stack: Stack, key: dict[str, str], order_id: str, final: set[str], timeout: float
) -> str:
    """Until the workflow's status is one of ``final`` and the API shows the same; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        held = workflow_state(stack, order_id).status.value
        shown = get_order(stack, key, order_id)["status"]
        if held in final and shown == held:
            return held
        if time.monotonic() > deadline:
            raise AssertionError(
                f"order {order_id} did not settle as one of {sorted(final)} within {timeout:g} s:"
                f" the API says {shown}, the workflow {held}"
            )
        time.sleep(0.2)


def sleep_until_phase(period: int, low: float, high: float) -> None:
    """Sleeps until ``time.time() % period`` is in [low, high): where a cutoff batch starts."""
    while not low <= time.time() % period < high:
        time.sleep(0.05)


class Observer:
    """Reads orders through the API every ``interval`` seconds and keeps what it saw.

    ``statuses[id]``: every status in the order seen (repeats collapsed); ``timelines[id]``:
    every timeline seen, as (type, at) pairs; ``shown_canceled``: the orders the API ever showed
    as canceled (status or timeline); ``failures``: GETs that did not answer 200 (a worker that
    is down or paused must not break a read).
    """

    def __init__(self, api_url: str, key: dict[str, str], interval: float = 0.1) -> None:
        self._http = httpx.Client(base_url=api_url, headers=key, timeout=5, verify=TLS)
        self._interval = interval
        self.statuses: dict[str, list[str]] = {}
        self.timelines: dict[str, set[Timeline]] = {}
        self.shown_canceled: set[str] = set()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)

    def watch(self, *order_ids: str) -> None:
        for order_id in order_ids:
            self.statuses.setdefault(order_id, [])
            self.timelines.setdefault(order_id, set())

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for order_id in list(self.statuses):
                self.sample(order_id)
            self._stop.wait(self._interval)

    def sample(self, order_id: str) -> None:
        try:
            response = self._http.get(f"/v1/orders/{order_id}")
        except httpx.HTTPError as error:
            self.failures.append(f"GET {order_id}: {type(error).__name__}")
            return
        if response.status_code != 200:
            self.failures.append(f"GET {order_id}: {response.status_code} {response.text[:200]}")
            return
        order = response.json()
        seen = self.statuses[order_id]
        if not seen or seen[-1] != order["status"]:
            seen.append(order["status"])
        timeline = timeline_of(order)
        self.timelines[order_id].add(timeline)
        if order["status"] == "canceled" or any(t == "canceled" for t, _ in timeline):
            self.shown_canceled.add(order_id)


T = TypeVar("T")
# A busy machine (or a worker just restarted) can make a call time out: worth asking again.
TRANSIENT = {RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE}


def ask_workflow(
    stack: Stack,
    order_id: str,
    ask: Callable[[WorkflowHandle[Any, Any]], Awaitable[T]],
    timeout: float = 30,
) -> T:
    """``await ask(handle)`` for the order's workflow, asking again while Temporal times out."""

    async def run() -> T:
        client = await Client.connect(stack.temporal_address, data_converter=suite_converter())
        handle = client.get_workflow_handle_for(OrderWorkflow.run, order_id)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await ask(handle)
            except RPCError as error:
                if error.status not in TRANSIENT or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.5)

    return asyncio.run(run())


def workflow_state(stack: Stack, order_id: str) -> OrderState:
    """The order as its workflow holds it: the ``OrderWorkflow.order`` query."""
    return ask_workflow(stack, order_id, lambda handle: handle.query(OrderWorkflow.order))


def task_timeout(stack: Stack, order_id: str) -> float:
    """The workflow task timeout the order's workflow runs with, in seconds."""

    async def describe(handle: WorkflowHandle[Any, Any]) -> float:
        config = (await handle.describe()).raw_description.execution_config
        return config.default_workflow_task_timeout.ToTimedelta().total_seconds()

    return ask_workflow(stack, order_id, describe)


def waits_for_cutoff(stack: Stack, order_id: str) -> bool:
    """True once the workflow's history holds its cutoff timer: the worker is idle, waiting."""

    async def history(handle: WorkflowHandle[Any, Any]) -> bool:
        try:
            events = (await handle.fetch_history()).events
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return False  # the relay has not started it yet
            raise
        return any(e.HasField("timer_started_event_attributes") for e in events)

    return ask_workflow(stack, order_id, history)


def timeline_seqs(stack: Stack, order_id: str) -> list[int]:
    """The timeline's sequence numbers as the read model stores them (the API shows no seq)."""
    db = Path(stack.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute(
            "SELECT seq FROM order_events WHERE order_id = ? ORDER BY rowid", (order_id,)
        )
        return [seq for (seq,) in rows]


def get_order(stack: Stack, key: dict[str, str], order_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.api_url}/v1/orders/{order_id}", headers=key, timeout=10, verify=TLS
    )
    assert response.status_code == 200, f"GET {order_id}: {response.status_code} {response.text}"
    order: dict[str, Any] = response.json()
    return order


def assert_consistent(
    stack: Stack, key: dict[str, str], order_id: str, observer: Observer | None = None
) -> dict[str, Any]:
    """The API, the workflow and the facility agree about ``order_id``; returns the order."""
    order = get_order(stack, key, order_id)
    state = workflow_state(stack, order_id)
    where = f"order {order_id}"

    # The read model is the workflow's state.
    shown, held = shown_and_held(order, state)
    shown |= {
        "shipments": [s["tracking_code"] for s in order["shipments"]],
        "hold": order["hold"] and Hold.model_validate(order["hold"]),
        "facility": order["facility"]["id"],
    }
    held |= {
        "shipments": [s.tracking_code for s in state.shipments],
        "hold": state.hold,
        "facility": state.facility.id,
    }
    assert shown == held, f"{where}: the API shows {shown}, the workflow holds {held}"

    # The timeline: one entry per change, numbered 1, 2, 3 … without gaps or repeats.
    types = [e["type"] for e in order["events"]]
    seqs = timeline_seqs(stack, order_id)
    assert seqs == list(range(1, state.event_seq + 1)), (
        f"{where}: timeline seqs {seqs}, the workflow made {state.event_seq} changes ({types})"
    )
    assert len(types) == state.event_seq, f"{where}: {len(types)} entries shown: {types}"
    ats = [instant(e["at"]) for e in order["events"]]
    assert ats == sorted(ats), f"{where}: timeline out of order: {order['events']}"
    for once in ("created", "canceled", "in_production", "printed", "delivered"):
        assert types.count(once) <= 1, f"{where}: {once!r} twice in {types}"
    if "canceled" in types:
        after = set(types[types.index("canceled") + 1 :])
        assert not after & NOT_AFTER_CANCEL, f"{where}: the timeline goes on after cancel: {types}"
    moves = [MOVES_TO[t] for t in types if t in MOVES_TO]
    if state.status.value in MOVES_TO.values():
        assert moves and moves[-1] == state.status.value, (
            f"{where}: the timeline {types} does not lead to {state.status.value}"
        )

    # The facility: one job for a produced order, none for a canceled one.
    jobs = facility_jobs(stack, order_id)
    assert len(jobs) <= 1, f"{where}: two print jobs: {jobs}"
    if state.status.value in PRODUCED:
        assert [j["job_id"] for j in jobs] == [state.job_id], f"{where}: jobs {jobs}"
    if state.status.value == "canceled":
        assert jobs == [], f"{where}: canceled, yet the facility has {jobs}"

    # Every timeline the API showed on the way was the start of this one: nothing taken back,
    # nothing shown out of order.
    if observer is not None:
        final = timeline_of(order)
        for seen in observer.timelines.get(order_id, ()):
            assert final[: len(seen)] == seen, (
                f"{where}: the API showed the timeline {[t for t, _ in seen]}, "
                f"which is not how it goes on: {[t for t, _ in final]}"
            )

    # A cancel the API ever showed is final.
    if observer is not None and order_id in observer.shown_canceled:
        assert state.status.value == "canceled" and jobs == [], (
            f"{where}: the API showed 'canceled' (statuses seen: "
            f"{observer.statuses.get(order_id)}), yet the workflow is {state.status.value} "
            f"and the facility has {jobs}"
        )
    return order
