"""A worker that stalls or dies never leaves the API and the workflow disagreeing.

Real processes: the Temporal dev server, the API, the worker and the facility simulator
(``fault_stack`` in conftest.py). Each test samples the orders through the API during the fault
and then checks ``assert_consistent``: the read model is the workflow's state, a ``canceled``
the API showed at any moment is final and never reached the facility, one job per produced
order, and each timeline counts up one by one and never goes on after ``canceled``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from devstack.processes import TLS
from devstack.stack import SimulatorOptions, Stack
from tests.faults.conftest import (
    UPDATE_TIMEOUT,
    Observer,
    StartStack,
    assert_consistent,
    get_order,
    sleep_until_phase,
    task_timeout,
    wait_for,
    wait_until_settled,
    waits_for_cutoff,
)
from tests.helpers.api import order_json

pytestmark = pytest.mark.e2e


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers
    seconds: float


class Cancel(threading.Thread):
    """``POST /v1/orders/{id}/cancel`` in the background, at ``at`` (monotonic) or at once."""

    def __init__(self, stack: Stack, key: dict[str, str], order_id: str, at: float = 0) -> None:
        super().__init__(name=f"cancel {order_id}", daemon=True)
        self.url = f"{stack.api_url}/v1/orders/{order_id}/cancel"
        self.headers = key | {"Idempotency-Key": f"cancel-{order_id}"}
        self.at = at
        self.answer: Answer | None = None
        self.error: str | None = None

    def run(self) -> None:
        time.sleep(max(0.0, self.at - time.monotonic()))
        sent = time.monotonic()
        try:
            response = httpx.post(
                self.url, json={"reason": "duplicate"}, headers=self.headers, timeout=60, verify=TLS
            )
        except httpx.HTTPError as error:
            self.error = f"{type(error).__name__} after {time.monotonic() - sent:.1f} s"
            return
        seconds = time.monotonic() - sent
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.text[:500]}
        self.answer = Answer(response.status_code, body, response.headers, seconds)

    def retry(self) -> httpx.Response:
        """The merchant's retry: the same request with the same Idempotency-Key."""
        return httpx.post(
            self.url, json={"reason": "duplicate"}, headers=self.headers, timeout=30, verify=TLS
        )

    def result(self) -> Answer:
        self.join(timeout=65)
        assert self.answer is not None, f"the cancel got no answer: {self.error or 'still waiting'}"
        return self.answer


def create_order(stack: Stack, key: dict[str, str], reference: str) -> str:
    created = httpx.post(
        f"{stack.api_url}/v1/orders",
        json=order_json(reference),
        headers=key,
        timeout=10,
        verify=TLS,
    )
    assert created.status_code == 201, created.text
    order_id: str = created.json()["id"]
    return order_id


def monotonic_at(instant: str) -> float:
    """``time.monotonic()`` at a moment the API gave in ISO 8601."""
    return time.monotonic() + (datetime.fromisoformat(instant) - datetime.now(UTC)).total_seconds()


STALL_EVERY = 20  # seconds between the facility's cutoffs
# Seconds from an order's creation to its cutoff: after the pause, or while it lasts.
CUTOFF_AFTER_PAUSE, CUTOFF_DURING_PAUSE = 18, 8


@pytest.mark.parametrize(
    "cutoff_in",
    [CUTOFF_AFTER_PAUSE, CUTOFF_DURING_PAUSE],
    ids=["cutoff after the pause", "cutoff during the pause"],
)
def test_a_cancel_sent_to_a_paused_worker_is_either_final_or_never_shown(
    fault_stack: StartStack, cutoff_in: int
) -> None:
    """The worker is paused (SIGSTOP) across two workflow-task timeouts while the merchant
    cancels; the cutoff comes after the pause, or while it lasts. The cancel may be accepted
    once the worker is back or vanish with the tasks that timed out: both are fine, as long as
    the API answered 503 "maybe" in time, GET then tells which, a ``canceled`` it ever showed
    is final, and the retry with the same Idempotency-Key applies the cancel at most once.
    """
    stack = fault_stack(every_seconds=STALL_EVERY, simulator=SimulatorOptions(report_events=False))
    key = {"X-API-Key": stack.create_merchant("Stall Shop", "help@stall.test")["api_key"]}
    # Created so that the next cutoff is about ``cutoff_in`` seconds away.
    sleep_until_phase(STALL_EVERY, STALL_EVERY - cutoff_in, STALL_EVERY - cutoff_in + 1.5)
    order_id = create_order(stack, key, "STALL-1")
    cutoff = monotonic_at(get_order(stack, key, order_id)["cutoff_at"])
    wait_for("the worker to wait for the cutoff", lambda: waits_for_cutoff(stack, order_id), 15)
    # Two workflow-task timeouts and a bit: 5.5 s with PRINTFLOW_WORKFLOW_TASK_TIMEOUT=2.
    paused_for = 2 * task_timeout(stack, order_id) + 1.5
    cancel = Cancel(stack, key, order_id)

    with Observer(stack.api_url, key) as observer:
        observer.watch(order_id)
        worker = stack.pids["worker"]
        os.killpg(worker, signal.SIGSTOP)
        try:
            paused = time.monotonic()
            cancel.start()
            cancel.join(timeout=UPDATE_TIMEOUT + 4)  # the API should answer while we wait
            resume_at = paused + paused_for
            if cutoff_in == CUTOFF_DURING_PAUSE:
                resume_at = max(resume_at, cutoff + 1.5)
            time.sleep(max(0.0, resume_at - time.monotonic()))
        finally:
            os.killpg(worker, signal.SIGCONT)

        # The stale tasks run, the cutoff passes and the order settles, either way.
        time.sleep(max(0.0, cutoff + 2 - time.monotonic()))
        final = {"canceled", "in_production"}
        wait_until_settled(stack, key, order_id, final, timeout=30)
        time.sleep(2)  # a late phantom write would show now

    order = assert_consistent(stack, key, order_id, observer)
    assert observer.failures == [], observer.failures
    canceled = order["status"] == "canceled"
    if not canceled:
        assert order_id not in observer.shown_canceled, observer.statuses

    # The API did not wait for the paused worker without bound, and said "maybe", not "error".
    answer = cancel.result()
    assert answer.status == 503, (answer.status, answer.body, f"{answer.seconds:.1f} s")
    assert answer.body["error"]["code"] == "order_busy", answer.body
    assert int(answer.headers["Retry-After"]) >= 1, answer.headers
    assert answer.seconds < UPDATE_TIMEOUT + 4, f"the cancel waited {answer.seconds:.1f} s"

    # GET told which; the retry with the first attempt's key says the same and applies once.
    retry = cancel.retry()
    if canceled:
        assert retry.status_code == 200, retry.text
        assert retry.json()["status"] == "canceled", retry.text
    else:
        assert retry.status_code == 409, retry.text
        assert retry.json()["error"]["code"] == "order_in_production", retry.text
    after = assert_consistent(stack, key, order_id, observer)
    assert after["status"] == order["status"]
    types = [e["type"] for e in after["events"]]
    assert types.count("canceled") == (1 if canceled else 0), types


CHAOS_EVERY = 8  # seconds between cutoffs
# Seconds between one restart being ready and the next SIGKILL.
KILL_AFTER = (1.5, 2.5, 1.8, 3.0, 2.2)


def test_orders_run_true_while_the_worker_is_killed_again_and_again(
    fault_stack: StartStack,
) -> None:
    """The worker is SIGKILLed and restarted five times while three orders pass their cutoff
    and the facility reports printed, shipped and delivered; one of them is canceled a second
    before its cutoff. A kill can land anywhere: between a projection and the end of its
    workflow task, during the submission, between a report and its projection. Afterwards
    each order is delivered or canceled, as its cancel's answer allows, and consistent.
    """
    simulator = SimulatorOptions(
        report_events=True, printed_after=1, shipped_after=1, delivered_after=1
    )
    stack = fault_stack(every_seconds=CHAOS_EVERY, simulator=simulator)
    key = {"X-API-Key": stack.create_merchant("Chaos Shop", "help@chaos.test")["api_key"]}
    sleep_until_phase(CHAOS_EVERY, 0.3, 1.5)
    produced = [create_order(stack, key, f"CHAOS-{n}") for n in range(2)]
    target = create_order(stack, key, "CHAOS-CANCEL")
    ids = [*produced, target]
    cutoff_in = CHAOS_EVERY - time.time() % CHAOS_EVERY
    # The merchant cancels one order a second before its cutoff, whatever the worker is doing.
    cancel = Cancel(stack, key, target, at=time.monotonic() + cutoff_in - 1)

    with Observer(stack.api_url, key) as observer:
        observer.watch(*ids)
        cancel.start()
        for pause in KILL_AFTER:
            time.sleep(pause)
            stack.kill_worker(signal.SIGKILL)
            stack.start_worker()
        answer = cancel.result()
        assert answer.status in (200, 409, 503), (answer.status, answer.body)

        for order_id in ids:
            wait_until_settled(stack, key, order_id, {"delivered", "canceled"}, timeout=60)
        time.sleep(1)

    assert observer.failures == [], observer.failures
    for order_id in ids:
        order = assert_consistent(stack, key, order_id, observer)
        types = [e["type"] for e in order["events"]]
        if order["status"] == "delivered":
            for step in ("in_production", "printed", "shipment", "delivered"):
                assert types.count(step) == 1, (order_id, types)
    for order_id in produced:
        assert observer.statuses[order_id][-1] == "delivered", observer.statuses
        assert order_id not in observer.shown_canceled, observer.statuses
    # A 2xx is final, a refusal changed nothing, a 503 may have gone either way.
    outcome = get_order(stack, key, target)["status"]
    expected = {200: {"canceled"}, 409: {"delivered"}, 503: {"canceled", "delivered"}}
    assert outcome in expected[answer.status], (answer.status, answer.body, outcome)
