"""Scale-out under faults: two API processes and two workers on one PostgreSQL schema take a
cutoff wave of 500 orders while one worker and one API process are SIGKILLed and started again.

Merchants' clients create the orders over both APIs ahead of one cutoff; from shortly before it
they read orders and cancel some, on both APIs, through the kills. Every answer is recorded: a
connection the killed API refuses or drops is fine (it is down), a 503 is fine (busy, retried
with the same ``Idempotency-Key``), any other 5xx fails the test. Once the wave is over every
order that was not canceled has exactly one print job at the facility, no canceled order has
one (nor one the API ever showed as canceled), and the read model behind each API shows what
each workflow holds.

Real processes: the Temporal dev server, the facility simulator (answering each print job after
a short delay, so the wave lasts long enough to be hit), ``api`` and ``api-2`` (uvicorn),
``worker`` and ``worker-2``, on a fresh PostgreSQL schema. ``PRINTFLOW_SCALE_OUT_ORDERS``
changes the number of orders (500 by default).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from devstack.config import SimulatorOptions
from devstack.processes import TLS
from devstack.stack import Stack
from domain.orders import OrderState
from tests.conftest import fresh_postgres_schema, suite_converter
from tests.helpers.api import order_json
from tests.helpers.faults import all_jobs, fault_stack, shown_and_held, wait_for
from workflows.orders import OrderWorkflow

# A wave of 500 on a machine shared with other tests takes minutes: more than the suite's 300 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ORDERS = int(os.environ.get("PRINTFLOW_SCALE_OUT_ORDERS", "500"))
MERCHANTS = 4
CLIENTS = 8  # threads creating, then reading
CANCELS = ORDERS // 10  # orders whose merchant cancels them as the wave comes
CUTOFF_EVERY = 90  # seconds between the facility's cutoffs
CREATES_WITHIN = 75  # seconds left before a cutoff for the creates to start
SETTLE = 400  # seconds the wave and the restarted processes may take to finish
# Connection errors of an API that is down (killed, or still starting again).
DOWN = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)


class Clients:
    """The merchants' side, spread over every API process: each answer's status, and what the
    merchants saw. One HTTP client per API process, shared by the threads."""

    def __init__(self, stack: Stack) -> None:
        limits = httpx.Limits(max_connections=4 * CLIENTS)
        self.http = [
            httpx.Client(base_url=stack.api_url_of(name), timeout=30, limits=limits, verify=TLS)
            for name in stack.api_names
        ]
        self.codes: Counter[tuple[str, int]] = Counter()  # (method and route, status) -> count
        self.down: Counter[str] = Counter()  # connection errors by kind
        self.bad: list[str] = []  # any 5xx but 503, with its body
        self.shown_canceled: set[str] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *_: object) -> None:
        for http in self.http:
            http.close()

    def send(
        self, n: int, method: str, path: str, key: dict[str, str], **kwargs: Any
    ) -> httpx.Response | None:
        """One request to the API process ``n`` (modulo their number); None if it is down."""
        http = self.http[n % len(self.http)]
        try:
            response = http.request(method, path, headers=key, **kwargs)
        except DOWN as error:
            with self._lock:
                self.down[type(error).__name__] += 1
            return None
        route = "/".join(part if i < 3 else "…" for i, part in enumerate(path.split("/")))
        with self._lock:
            self.codes[(f"{method} {route}", response.status_code)] += 1
            if response.status_code >= 500 and response.status_code != 503:
                self.bad.append(
                    f"{method} {http.base_url}{path}: {response.status_code} {response.text[:300]}"
                )
        if method == "GET" and response.status_code == 200:
            if response.json().get("status") == "canceled":
                with self._lock:
                    self.shown_canceled.add(response.json()["id"])
        return response

    def until_answered(
        self, n: int, method: str, path: str, key: dict[str, str], **kwargs: Any
    ) -> httpx.Response:
        """``send`` again, on the next API process each time, until it is answered: not 503,
        and not a 409 ``idempotency_key_in_progress`` (the same key's request is still running,
        or ran in the API process that was killed: its claim lapses). A write carries its
        ``Idempotency-Key``, so the retries are the same request."""
        deadline = time.monotonic() + SETTLE
        for attempt in itertools.count(n):
            response = self.send(attempt, method, path, key, **kwargs)
            if response is not None and not busy(response):
                return response
            assert time.monotonic() < deadline, f"{method} {path}: not answered but busy"
            time.sleep(
                min(1.0, float(response.headers.get("Retry-After", 0.2))) if response else 0.2
            )
        raise AssertionError("unreachable")


@pytest.fixture
def shared_database(postgres_url: str) -> Iterator[str]:
    with fresh_postgres_schema(postgres_url) as url:
        yield url


def test_a_cutoff_wave_through_two_apis_and_two_workers_survives_a_kill_of_each(
    tmp_path: Path, shared_database: str
) -> None:
    with (
        fault_stack(
            tmp_path,
            every_seconds=CUTOFF_EVERY,
            # Each print job answered after a moment: the wave lasts long enough to be hit.
            simulator=SimulatorOptions(report_events=False, response_delay=0.3),
            apis=2,
            workers=2,
            env={
                "PRINTFLOW_DATABASE_URL": shared_database,
                "PRINTFLOW_RATE_LIMIT": "off",
                # A wave of hundreds of orders on two cores queues workflow tasks for seconds:
                # the production default, not the fault suite's 2 s made for stalled workers.
                "PRINTFLOW_WORKFLOW_TASK_TIMEOUT": "10",
            },
        ) as stack,
        Clients(stack) as clients,
        ThreadPoolExecutor(CLIENTS) as creators,
    ):
        keys = [
            {"X-API-Key": stack.create_merchant(f"Shop {m}", f"help@shop{m}.test")["api_key"]}
            for m in range(MERCHANTS)
        ]

        # ---- the orders, over both APIs, all before one cutoff
        def create(n: int) -> tuple[str, dict[str, str], str]:
            key = keys[n % MERCHANTS]
            response = clients.until_answered(
                n,
                "POST",
                "/v1/orders",
                key | {"Idempotency-Key": f"create-{n}"},
                json=order_json(f"WAVE-{n}"),
            )
            assert response.status_code == 201, f"create {n}: {response.text}"
            order = response.json()
            return order["id"], key, order["cutoff_at"]

        # The creates start with CREATES_WITHIN seconds or more before the next cutoff.
        if CUTOFF_EVERY - time.time() % CUTOFF_EVERY < CREATES_WITHIN:
            time.sleep(CUTOFF_EVERY - time.time() % CUTOFF_EVERY + 0.2)
        created = list(creators.map(create, range(ORDERS)))
        cutoffs = {cutoff for _, _, cutoff in created}
        assert len(cutoffs) == 1, (
            f"the creates took longer than {CREATES_WITHIN} s and met several cutoffs {cutoffs}:"
            " fewer orders (PRINTFLOW_SCALE_OUT_ORDERS) or a less loaded machine"
        )
        cutoff = datetime.fromisoformat(cutoffs.pop()).timestamp()
        orders = {order_id: key for order_id, key, _ in created}
        ids = list(orders)
        to_cancel = ids[:: max(1, ORDERS // max(1, CANCELS))][:CANCELS]

        # ---- the wave: reads and cancels on both APIs while a worker and an API are killed
        cancel_answers: dict[str, int] = {}
        stop = threading.Event()

        def read(start: int) -> None:
            for n in itertools.count(start, CLIENTS):
                if stop.is_set():
                    return
                order_id = ids[n % len(ids)]
                clients.send(n, "GET", f"/v1/orders/{order_id}", orders[order_id])
                stop.wait(0.05)

        def cancel(n: int, order_id: str) -> None:
            # Half at once, the others from just before the cutoff into the wave: those in time
            # are canceled (200), those too late refused (409).
            if n >= CANCELS // 2:
                time.sleep(max(0.0, cutoff - 1 + (n - CANCELS // 2) * 0.1 - time.time()))
            response = clients.until_answered(
                n,
                "POST",
                f"/v1/orders/{order_id}/cancel",
                orders[order_id] | {"Idempotency-Key": f"cancel-{order_id}"},
                json={},
            )
            cancel_answers[order_id] = response.status_code

        with ThreadPoolExecutor(CLIENTS + CANCELS) as merchants:
            cancels = [merchants.submit(cancel, n, o) for n, o in enumerate(to_cancel)]
            time.sleep(max(0.0, cutoff - 3 - time.time()))
            readers = [merchants.submit(read, s) for s in range(CLIENTS)]
            try:
                # Mid-wave: once the facility has the wave's first jobs.
                at_kill = len(wait_for("the wave's first jobs", lambda: all_jobs(stack), 60))
                assert stack.kill("worker-2", signal.SIGKILL) == -signal.SIGKILL
                assert stack.kill("api-2", signal.SIGKILL) == -signal.SIGKILL
                stack.start_worker("worker-2")
                stack.start_api("api-2")
                for done in cancels:
                    done.result(timeout=SETTLE)
                canceled = {o for o, code in cancel_answers.items() if code == 200}
                assert set(cancel_answers.values()) <= {200, 409}, cancel_answers
                assert at_kill < ORDERS - len(canceled), "the kills came after the wave"

                # ---- until the wave is over: each order at the facility or canceled
                wait_for(
                    "a print job for every order not canceled",
                    lambda: len(all_jobs(stack)) >= ORDERS - len(canceled),
                    timeout=SETTLE,
                )
                states = wait_for(
                    "every workflow in production or canceled",
                    lambda: settled(stack, ids),
                    timeout=SETTLE,
                )

                def shown(n: int) -> dict[str, Any]:
                    path = f"/v1/orders/{ids[n]}"
                    response = clients.until_answered(n, "GET", path, orders[ids[n]])
                    assert response.status_code == 200, f"GET {path}: {response.text}"
                    order: dict[str, Any] = response.json()
                    return order

                def caught_up() -> list[dict[str, Any]] | None:
                    found = list(creators.map(shown, range(ORDERS)))
                    fresh = all(o["status"] == states[o["id"]].status.value for o in found)
                    return found if fresh else None

                # The read model may be a projection behind; on both APIs it must catch up.
                final = wait_for("the read model to show every workflow", caught_up, SETTLE)
            finally:
                stop.set()
            for reader in readers:
                reader.result(timeout=30)

        # ---- what every client saw, what the facility has, what the API shows
        assert not clients.bad, f"{len(clients.bad)} 5xx other than 503: {clients.bad[:5]}"
        jobs: dict[str, list[str]] = {}
        for job in all_jobs(stack):
            jobs.setdefault(job["order_id"], []).append(job["job_id"])
        for order in final:
            order_id = order["id"]
            state = states[order_id]
            where = f"order {order_id}"
            if state.status.value == "canceled":
                assert order_id not in jobs, f"{where}: canceled, yet at the facility"
            else:
                assert jobs.get(order_id) == [state.job_id], f"{where}: jobs {jobs.get(order_id)}"
            if order_id in canceled or order_id in clients.shown_canceled:
                assert state.status.value == "canceled", f"{where}: shown canceled, holds {state}"
            shown, held = shown_and_held(order, state)
            assert shown == held, f"{where}: the API shows {shown}, holds {held}"
        produced = [o for o, s in states.items() if s.status.value == "in_production"]
        assert len(produced) == len(jobs) == ORDERS - len(canceled), (len(produced), len(jobs))
        print(
            f"\n{ORDERS} orders, {len(canceled)} canceled, {len(jobs)} jobs ({at_kill} at the "
            f"kills); answers {sorted(clients.codes.items())}; down {dict(clients.down)}"
        )


def busy(response: httpx.Response) -> bool:
    """A 503, or a 409 saying that the same ``Idempotency-Key`` is still in progress."""
    if response.status_code == 503:
        return True
    return response.status_code == 409 and "idempotency_key_in_progress" in response.text


def settled(stack: Stack, ids: list[str]) -> dict[str, OrderState] | None:
    """Every order's workflow state, once each is in production or canceled; else None."""

    async def query() -> dict[str, OrderState] | None:
        client = await Client.connect(stack.temporal_address, data_converter=suite_converter())
        limit = asyncio.Semaphore(20)

        async def one(order_id: str) -> OrderState:
            async with limit:
                handle = client.get_workflow_handle_for(OrderWorkflow.run, order_id)
                return await handle.query(OrderWorkflow.order)

        states = await asyncio.gather(*(one(i) for i in ids))
        if all(s.status.value in ("in_production", "canceled") for s in states):
            return dict(zip(ids, states, strict=True))
        return None

    return asyncio.run(query())
