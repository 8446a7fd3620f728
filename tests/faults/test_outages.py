"""Outages around the order's workflow: every order answered 201 gets its workflow and one print
job, a write answered 503 is applied once when retried, and a facility that fails or refuses
never gets a second job.

Real processes (``devstack.Stack``): the Temporal dev server on its SQLite file under the stack's
data dir (stopped or killed, then started again on the same port and file), the API (SIGKILLed,
then started again), the worker and the facility simulator, whose ``/_control`` endpoints stage
the facility's failures. One facility takes every order; its cutoffs come every few seconds
(multiples of ``every_seconds`` since the epoch), and each test starts its orders far enough
from the next cutoff for the outage to be over before it.

1. The API is SIGKILLed after it committed orders and before it could start their workflows
   (Temporal is down): once both are back, the relay starts every one, once, and each order
   reaches production at the cutoff it was promised.
2. Temporal is down while merchants create, cancel and re-address: creates answer 201 at once,
   reads answer from the read model, writes answer 503 with ``Retry-After`` (never 500), and the
   same writes retried with their ``Idempotency-Key`` once Temporal is back apply exactly once.
3. The facility answers 503, then 429, then takes the job: one job. It refuses another order
   with 422: the order waits on hold, is not retried, and after the merchant's ``proceed`` (the
   facility fixed) it gets its one job.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from devstack.processes import TLS
from devstack.stack import SimulatorOptions, Stack, StackConfig
from domain.orders import Hold, OrderState
from tests.conftest import suite_converter
from tests.helpers.api import order_json
from tests.helpers.faults import instant, shown_and_held
from workflows.orders import OrderWorkflow

pytestmark = pytest.mark.e2e

FACILITY_ID = "outage"
FACILITY_TOKEN = "tok-outage"
UPDATE_TIMEOUT = 3  # seconds an Update waits before the API answers 503 order_busy
ENV = {
    "PRINTFLOW_UPDATE_TIMEOUT": str(UPDATE_TIMEOUT),
    # The relay's sweep takes an order whose start did not happen after 1 s (default 10 s).
    "PRINTFLOW_START_SWEEP_AFTER": "1",
    # Other stacks may run on this machine: no fixed metrics port for the worker.
    "PRINTFLOW_WORKER_METRICS_PORT": "0",
}
CREATE_LIMIT = 1.0  # seconds a create may take with Temporal down (it never waits for it)


# ---------------------------------------------------------------------------- the stack


@contextmanager
def outage_stack(tmp_path: Path, *, every_seconds: int) -> Iterator[Stack]:
    """All processes, with one facility (every country) cutting off every ``every_seconds``."""
    facilities = tmp_path / "facilities.json"
    stack = Stack(
        StackConfig.ephemeral(
            tmp_path / "stack",
            facilities_file=facilities,
            simulator=SimulatorOptions(report_events=False),
            env=ENV,
        )
    )
    facility = {
        "id": FACILITY_ID,
        "name": "Outage Prints",
        "timezone": "Europe/Berlin",
        "countries": ["*"],
        "api_url": stack.simulator_url,
        "api_token": FACILITY_TOKEN,
        "schedule": {"every_seconds": every_seconds},
    }
    facilities.write_text(json.dumps([facility]))
    with stack:
        yield stack


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """``check()`` until it returns something truthy; fails naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if last := check():
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def leave_time_before_cutoff(every_seconds: int, needed: float) -> None:
    """Returns once the next cutoff (a multiple of ``every_seconds``) is ``needed`` s away."""
    assert needed < every_seconds - 1, "the test cannot fit between two cutoffs"
    remaining = every_seconds - time.time() % every_seconds
    if remaining < needed:
        time.sleep(remaining + 0.3)


class Shop:
    """A merchant of the stack, talking to its API; and what the facility holds."""

    def __init__(self, stack: Stack, http: httpx.Client, name: str) -> None:
        self.stack = stack
        self.http = http
        merchant = stack.create_merchant(name, f"help@{name.lower().replace(' ', '-')}.test")
        self.key = {"X-API-Key": merchant["api_key"]}

    def create(self, reference: str, **overrides: Any) -> httpx.Response:
        return self.http.post(
            f"{self.stack.api_url}/v1/orders",
            json=order_json(reference, **overrides),
            headers=self.key,
        )

    def get(self, order_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.stack.api_url}/v1/orders/{order_id}", headers=self.key)
        assert response.status_code == 200, (order_id, response.status_code, response.text)
        order: dict[str, Any] = response.json()
        return order

    def listed_ids(self) -> list[str]:
        response = self.http.get(
            f"{self.stack.api_url}/v1/orders", params={"limit": 100}, headers=self.key
        )
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()["data"]]

    def write(
        self, method: str, path: str, body: dict[str, Any], idempotency_key: str
    ) -> httpx.Response:
        """A POST/PUT on a connection of its own: after a 503 for a dependency that is down,
        the API drops the connection (see the last test), and a pooled one would be reset."""
        return httpx.request(
            method,
            f"{self.stack.api_url}{path}",
            json=body,
            headers=self.key | {"Idempotency-Key": idempotency_key},
            timeout=30,
            verify=TLS,
        )

    def status_is(self, order_id: str, *statuses: str) -> dict[str, Any] | None:
        order = self.get(order_id)
        return order if order["status"] in statuses else None

    def jobs(self, order_id: str) -> list[dict[str, Any]]:
        jobs = self.http.get(f"{self.stack.simulator_url}/print-jobs").json()
        return [j for j in jobs if j["order_id"] == order_id]

    def submissions(self, order_id: str) -> list[dict[str, Any]]:
        """Every ``POST /print-jobs`` the facility got for the order, oldest first."""
        requests = self.http.get(f"{self.stack.simulator_url}/_control/requests").json()
        return [r for r in requests if r["order_id"] == order_id]

    def control(self, path: str, body: dict[str, Any] | None = None) -> None:
        url = f"{self.stack.simulator_url}/_control/{path}"
        response = self.http.post(url, json=body) if body is not None else self.http.delete(url)
        assert response.is_success, f"{path}: {response.status_code} {response.text}"


# ---------------------------------------------------------------------------- Temporal's side


def _temporal(stack: Stack, work: Callable[[Client], Any]) -> Any:
    async def run() -> Any:
        client = await Client.connect(stack.temporal_address, data_converter=suite_converter())
        return await work(client)

    return asyncio.run(run())


def describe(stack: Stack, order_id: str) -> WorkflowExecutionDescription | None:
    """The order's workflow as Temporal describes it; None while it does not exist."""

    async def work(client: Client) -> WorkflowExecutionDescription | None:
        try:
            return await client.get_workflow_handle(order_id).describe()
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return None
            raise

    result: WorkflowExecutionDescription | None = _temporal(stack, work)
    return result


def runs(stack: Stack, order_id: str) -> int:
    """How many workflow executions Temporal has under the order's id (visibility)."""

    async def work(client: Client) -> int:
        return len([w async for w in client.list_workflows(f"WorkflowId = '{order_id}'")])

    count: int = _temporal(stack, work)
    return count


def workflow_state(stack: Stack, order_id: str) -> OrderState:
    """The order as its workflow holds it: the ``OrderWorkflow.order`` query."""

    async def work(client: Client) -> OrderState:
        handle = client.get_workflow_handle_for(OrderWorkflow.run, order_id)
        return await handle.query(OrderWorkflow.order)

    state: OrderState = _temporal(stack, work)
    return state


def pending_starts(stack: Stack) -> set[str]:
    """Orders whose workflow start still waits in the ``order_starts`` outbox."""
    db = stack.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return {row[0] for row in conn.execute("SELECT order_id FROM order_starts")}


def assert_read_model_is_workflow(shop: Shop, order_id: str) -> dict[str, Any]:
    """What the API shows of the order is what its workflow holds; returns the order."""
    order = shop.get(order_id)
    state = workflow_state(shop.stack, order_id)
    shown, held = shown_and_held(order, state)
    shown |= {
        "hold": order["hold"] and Hold.model_validate(order["hold"]),
        "facility": order["facility"]["id"],
        "shipping_address": order["shipping_address"],
    }
    held |= {
        "hold": state.hold,
        "facility": state.facility.id,
        "shipping_address": state.shipping_address.model_dump(mode="json"),
    }
    assert shown == held, f"order {order_id}: the API shows {shown}, the workflow holds {held}"
    return order


def timeline(order: dict[str, Any]) -> list[str]:
    return [e["type"] for e in order["events"]]


def assert_unavailable(response: httpx.Response, what: str) -> None:
    """A 503 in the error envelope with ``Retry-After``: "maybe", never a 500."""
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}, f"{what}: not the envelope: {error}"
    assert error["code"] in ("order_busy", "temporarily_unavailable"), f"{what}: {error}"
    assert int(response.headers["Retry-After"]) >= 1, f"{what}: {response.headers}"


def retried_until_answered(send: Callable[[], httpx.Response], what: str) -> httpx.Response:
    """Sends again (same request, same key) while the answer is 503, as a client would."""
    answers: list[int] = []

    def answered() -> httpx.Response | None:
        response = send()
        answers.append(response.status_code)
        if response.status_code == 503:
            assert_unavailable(response, what)
            return None
        return response

    response: httpx.Response = wait_for(f"{what} to be answered", answered, 30, every=1)
    assert 500 not in answers, f"{what}: answered 500 on the way: {answers}"
    return response


# ---------------------------------------------------------------------------- 1. API killed


def test_orders_committed_before_the_api_was_killed_all_get_their_workflow(
    tmp_path: Path,
) -> None:
    every = 20  # seconds between cutoffs; the outage below takes about ten
    with outage_stack(tmp_path, every_seconds=every) as stack, httpx.Client(timeout=30) as http:
        shop = Shop(stack, http, "Killed Shop")
        db_file = stack.data_dir / "temporal.db"
        assert db_file.exists(), f"the dev server keeps no SQLite file at {db_file}"

        leave_time_before_cutoff(every, needed=16)
        # One order whose workflow runs before the outage: it must survive Temporal's restart.
        before = shop.create("KILL-BEFORE")
        assert before.status_code == 201, before.text
        before_id = before.json()["id"]
        wait_for("the first order's workflow", lambda: describe(stack, before_id), 10)

        stack.stop_process("temporal")
        created: dict[str, dict[str, Any]] = {}
        for n in range(3):
            sent = time.monotonic()
            response = shop.create(f"KILL-{n}")
            took = time.monotonic() - sent
            assert response.status_code == 201, response.text
            assert took < CREATE_LIMIT, f"create {n} took {took:.2f} s with Temporal down"
            created[response.json()["id"]] = response.json()
        ids = list(created)
        # The API dies with every start still to do: Temporal never heard of these orders.
        assert stack.kill("api", signal.SIGKILL) == -signal.SIGKILL
        assert pending_starts(stack) == set(ids), "each 201 left its start in the outbox"

        stack.start_temporal()
        survivor = describe(stack, before_id)
        assert survivor is not None, "the workflow started before the outage did not survive"
        assert survivor.status is WorkflowExecutionStatus.RUNNING
        for order_id in ids:
            assert describe(stack, order_id) is None, "nobody could have started it yet"
        stack.start_api()

        # The restarted API's relay starts each of them.
        for order_id in ids:
            described = wait_for(
                f"the workflow of {order_id} (started by the relay)",
                partial(describe, stack, order_id),
                45,
            )
            assert described.workflow_type == "OrderWorkflow"
            assert described.task_queue == stack.task_queue
        wait_for("the outbox to empty", lambda: not pending_starts(stack), 15)
        every_order = [before_id, *ids]
        for order_id in every_order:
            assert runs(stack, order_id) == 1, f"{order_id}: not exactly one workflow run"

        for order_id in every_order:
            wait_for(
                f"order {order_id} to reach production",
                partial(shop.status_is, order_id, "in_production"),
                every + 30,
            )
        # Nothing lost, nothing twice: the merchant sees exactly these orders.
        assert sorted(shop.listed_ids()) == sorted(every_order)
        promised = {before_id: before.json()["cutoff_at"]} | {
            i: o["cutoff_at"] for i, o in created.items()
        }
        for order_id in every_order:
            order = assert_read_model_is_workflow(shop, order_id)
            cutoff = instant(promised[order_id])
            assert cutoff is not None
            assert instant(order["cutoff_at"]) == cutoff, "the cutoff promised at 201 holds"
            produced = next(e for e in order["events"] if e["type"] == "in_production")
            at = instant(produced["at"])
            assert at is not None
            assert cutoff <= at < cutoff + timedelta(seconds=15), (
                f"{order_id}: in production at {at}, its cutoff was {cutoff}"
            )
            assert timeline(order).count("in_production") == 1, timeline(order)
            jobs = shop.jobs(order_id)
            assert [j["job_id"] for j in jobs] == [order["job_id"]], f"{order_id}: {jobs}"
            keys = {s["idempotency_key"] for s in shop.submissions(order_id)}
            assert keys == {order_id}, keys


# ---------------------------------------------------------------------------- 2. Temporal down


def test_temporal_down_during_creates_and_updates(tmp_path: Path) -> None:
    every = 30  # seconds between cutoffs; the outage below takes about fifteen
    with outage_stack(tmp_path, every_seconds=every) as stack, httpx.Client(timeout=30) as http:
        shop = Shop(stack, http, "Down Shop")
        leave_time_before_cutoff(every, needed=24)
        assert stack.kill("temporal", signal.SIGKILL) == -signal.SIGKILL

        ids = []
        for n in range(3):
            sent = time.monotonic()
            response = shop.create(f"DOWN-{n}")
            took = time.monotonic() - sent
            assert response.status_code == 201, response.text
            assert took < CREATE_LIMIT, f"create {n} took {took:.2f} s with Temporal down"
            ids.append(response.json()["id"])
        kept, canceled, moved = ids

        # Reads come from the read model: they do not need Temporal.
        for order_id in ids:
            order = shop.get(order_id)
            assert order["status"] == "scheduled" and timeline(order) == ["created"]
        assert sorted(shop.listed_ids()) == sorted(ids)

        cancel = ("POST", f"/v1/orders/{canceled}/cancel", {"reason": "changed my mind"})
        new_address = order_json()["shipping_address"] | {"city": "Hamburg", "post_code": "20095"}
        readdress = ("PUT", f"/v1/orders/{moved}/shipping-address", new_address)
        assert_unavailable(shop.write(*cancel, "down-cancel"), "the cancel with Temporal down")
        assert_unavailable(shop.write(*readdress, "down-move"), "the move with Temporal down")
        for order_id in ids:
            assert shop.get(order_id)["status"] == "scheduled", "a 503 changed the read model"

        stack.start_temporal()
        retried = retried_until_answered(
            lambda: shop.write(*cancel, "down-cancel"), "the retried cancel"
        )
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "canceled"
        assert retried.json()["cancel_reason"] == "changed my mind"
        moved_answer = retried_until_answered(
            lambda: shop.write(*readdress, "down-move"), "the retried move"
        )
        assert moved_answer.status_code == 200, moved_answer.text
        assert moved_answer.json()["shipping_address"]["city"] == "Hamburg"
        # Once more with the same key: the first answer again, the change not made twice.
        again = shop.write(*cancel, "down-cancel")
        assert again.status_code == 200 and again.json()["status"] == "canceled", again.text

        for order_id in (kept, moved):
            wait_for(
                f"order {order_id} to reach production",
                partial(shop.status_is, order_id, "in_production"),
                every + 30,
            )
        for order_id in ids:
            describe_ = describe(stack, order_id)
            assert describe_ is not None, f"{order_id} has no workflow"
            assert runs(stack, order_id) == 1, f"{order_id}: not exactly one workflow run"
            assert_read_model_is_workflow(shop, order_id)
        wait_for("the outbox to empty", lambda: not pending_starts(stack), 15)

        gone = shop.get(canceled)
        assert gone["status"] == "canceled" and gone["cancel_reason"] == "changed my mind"
        assert timeline(gone).count("canceled") == 1, timeline(gone)
        assert "in_production" not in timeline(gone), timeline(gone)
        assert shop.jobs(canceled) == [], "a canceled order reached the facility"
        assert shop.submissions(canceled) == []

        for order_id in (kept, moved):
            jobs = shop.jobs(order_id)
            assert [j["job_id"] for j in jobs] == [shop.get(order_id)["job_id"]], jobs
        assert shop.jobs(moved)[0]["request"]["shipping_address"]["city"] == "Hamburg"
        assert shop.jobs(kept)[0]["request"]["shipping_address"]["city"] == "Berlin"
        moved_timeline = timeline(shop.get(moved))
        assert moved_timeline.count("shipping_address_updated") == 1, moved_timeline


# ---------------------------------------------------------------------------- 3. the facility


def test_a_facility_failing_then_refusing_gets_one_job_per_order(tmp_path: Path) -> None:
    every = 4  # seconds between cutoffs
    with outage_stack(tmp_path, every_seconds=every) as stack, httpx.Client(timeout=30) as http:
        shop = Shop(stack, http, "Busy Shop")

        # Busy: 503, then 429, then the job is taken. The simulator plays one staged failure
        # at a time, so the 429 is staged once the 503 was answered (retries come 1 s, then
        # 2 s apart).
        leave_time_before_cutoff(every, needed=2.5)
        busy = shop.create("BUSY-1")
        assert busy.status_code == 201, busy.text
        busy_id = busy.json()["id"]
        shop.control("fail-next", {"status": 503, "count": 1})
        wait_for(
            "the facility to answer 503",
            lambda: [s["status"] for s in shop.submissions(busy_id)] == [503],
            every + 10,
            every=0.05,
        )
        shop.control("fail-next", {"status": 429, "count": 1})
        wait_for(
            "the busy facility to take the job",
            lambda: shop.status_is(busy_id, "in_production", "on_hold"),
            30,
        )
        statuses = [s["status"] for s in shop.submissions(busy_id)]
        assert statuses == [503, 429, 201], f"what the facility answered: {statuses}"
        order = assert_read_model_is_workflow(shop, busy_id)
        assert order["status"] == "in_production" and order["hold"] is None, order
        assert [j["job_id"] for j in shop.jobs(busy_id)] == [order["job_id"]]
        assert {s["idempotency_key"] for s in shop.submissions(busy_id)} == {busy_id}

        # Refusing: a 422 is not retried; the order waits for the merchant.
        leave_time_before_cutoff(every, needed=2.5)
        refused = shop.create("NO-1")
        assert refused.status_code == 201, refused.text
        refused_id = refused.json()["id"]
        shop.control("reject-order", {"order_id": refused_id})
        held = wait_for(
            "the refused order to go on hold",
            lambda: shop.status_is(refused_id, "on_hold", "in_production"),
            every + 20,
        )
        assert held["status"] == "on_hold", held
        assert held["hold"]["kind"] == "facility_rejected", held["hold"]
        assert "422" in held["hold"]["description"], held["hold"]
        assert shop.jobs(refused_id) == []
        time.sleep(2)  # a retry would come 1 s after the refusal
        assert [s["status"] for s in shop.submissions(refused_id)] == [422], "not retried"
        assert_read_model_is_workflow(shop, refused_id)

        # The facility fixed, the merchant proceeds: one job.
        shop.control(f"reject-order/{refused_id}")
        answer = shop.write(
            "POST", f"/v1/orders/{refused_id}/resolve-hold", {"action": "proceed"}, "proceed-1"
        )
        assert answer.status_code == 200, answer.text
        wait_for(
            "the released order to reach production",
            lambda: shop.status_is(refused_id, "in_production"),
            30,
        )
        order = assert_read_model_is_workflow(shop, refused_id)
        assert [j["job_id"] for j in shop.jobs(refused_id)] == [order["job_id"]]
        assert [s["status"] for s in shop.submissions(refused_id)] == [422, 201]
        assert {s["idempotency_key"] for s in shop.submissions(refused_id)} == {refused_id}
        assert timeline(order).count("in_production") == 1, timeline(order)


# ---------------------------------------------------------------------------- 4. a 503 is an answer


def test_a_503_for_temporal_down_is_an_answer_not_a_crash(tmp_path: Path) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path / "stack", env=ENV))
    stack.start(only=["temporal", "api"])
    try:
        with httpx.Client(base_url=stack.api_url, timeout=30) as http:
            key = {"X-API-Key": stack.create_merchant("Pool Shop", "help@pool.test")["api_key"]}
            created = http.post("/v1/orders", json=order_json("POOL-1"), headers=key)
            assert created.status_code == 201, created.text
            order_id = created.json()["id"]
            stack.stop_process("temporal")

            cancel = http.post(
                f"/v1/orders/{order_id}/cancel", json={}, headers=key | {"Idempotency-Key": "p-1"}
            )
            assert_unavailable(cancel, "the cancel with Temporal down")
            route = 'method="POST",route="/v1/orders/{order_id}/cancel"'
            scrape = {"Authorization": f"Bearer {stack.metrics_token}"}
            metrics = wait_for(
                "the cancel to be counted",
                lambda: (
                    route in (text := httpx.get(f"{stack.api_url}/metrics", headers=scrape).text)
                    and text
                ),
                5,
            )
            assert f'{route},status="503"' in metrics, "the 503 is not counted as a 503"
            assert f'{route},status="500"' not in metrics, "the 503 is counted as a 500"
            log = stack.log_tail("api", 400)
            assert "POST /v1/orders/{order_id}/cancel 503" in log, "the access log says otherwise"
            assert "Exception in ASGI application" not in log, "the 503 escaped as a crash"
            # The client's keep-alive connection serves its next request.
            after = http.get(f"/v1/orders/{order_id}", headers=key)
            assert after.status_code == 200 and after.json()["status"] == "scheduled"
    finally:
        stack.stop()
