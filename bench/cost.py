"""Cost per operation: CPU milliseconds per create, GET, cancel and order, by process, against
the floors measured in the same run.

Each step runs one kind of operation and nothing else, by ``COST_CONCURRENCY`` clients in a
closed loop, for at least ``min_ops`` operations and ``min_seconds`` seconds; the processes'
CPU time (user + system, ``/proc/<pid>/stat``) is read before the first operation and again
once everything the operations set off has finished (the processes are back to idle), and the
difference, less what each process uses idle in as long (measured first), is divided by the
number of operations. The bench's own client is not counted.

- **bare insert** and **bare GET** (``bench/bare_api.py``): one INSERT of the order's body, and
  one primary-key read, behind uvicorn and Starlette on the same database; processes: the bare
  app (and PostgreSQL's backends);
- **create**: ``POST /v1/orders`` for ``bench-far`` (the order waits for a cutoff hours away),
  until the workflow has started, checked the print file and waits on its timer; processes:
  API, worker, Temporal, simulator (it serves the print file) and PostgreSQL's backends;
- **GET**: ``GET /v1/orders/{id}`` of those orders;
- **cancel**: ``POST /v1/orders/{id}/cancel`` of those orders, until their workflows closed;
- **order**: ``POST /v1/orders`` for ``bench-soon`` (a cutoff every 5 seconds, so the check is
  done before the cutoff, as for a real order), until every print job reached the facility;
- **bare workflow** (``bench/bare.py``, ``BareThree``): start to close of a workflow of three
  no-op activities, on the bare worker; processes: the bare worker and Temporal.

Ratios: GET ÷ bare GET, create ÷ bare insert (the create's workflow start and first tasks
included), order ÷ bare workflow. On PostgreSQL the database's work is a process of its own
(``database``: the server's backends serving the stack's connections, found by their
``application_name``); on SQLite it runs inside the processes that use it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from temporalio.client import Client

from bench.bare import BareThree
from bench.baseline import closed_times
from bench.common import (
    FAR,
    SOON,
    SOON_PERIOD,
    Api,
    BenchError,
    CpuReading,
    cpu_used,
    machine_busy_seconds,
    next_boundary,
    order_body,
    per_operation,
    read_cpu,
    say,
    sleep_until,
    wait_submitted,
)

T = TypeVar("T")

COST_CONCURRENCY = 4
IDLE_SECONDS = 5.0
# What each step counts, beside the processes that ran its operations: none of the others.
PRINTFLOW = ("api", "worker", "temporal", "simulator", "database")
BARE_API = ("bare-api", "database")
BARE_WORKFLOW = ("bare-worker", "temporal")


@dataclass
class Processes:
    """The processes to read, by name; ``database`` lists PostgreSQL's backends of the stack's
    connections as they are now (None on SQLite)."""

    pids: dict[str, int]
    database: Callable[[], list[int]] | None = None

    def groups(self) -> dict[str, Sequence[int]]:
        groups: dict[str, Sequence[int]] = {name: [pid] for name, pid in self.pids.items()}
        groups["bench"] = [os.getpid()]
        if self.database is not None:
            groups["database"] = self.database()
        return groups

    def read(self) -> CpuReading:
        return read_cpu(self.groups())


async def run_for(
    operation: Callable[[int], Awaitable[T]],
    concurrency: int,
    min_ops: int,
    min_seconds: float,
    max_ops: int | None = None,
) -> list[T]:
    """``operation(n)`` for n = 0, 1, … by ``concurrency`` clients in a closed loop, until at
    least ``min_ops`` ran and ``min_seconds`` passed (and never more than ``max_ops``)."""
    results: list[T] = []
    started = time.monotonic()
    turn = 0

    def more() -> int | None:
        nonlocal turn
        if max_ops is not None and turn >= max_ops:
            return None
        if turn >= min_ops and time.monotonic() - started >= min_seconds:
            return None
        turn += 1
        return turn - 1

    async def client() -> None:
        while (n := more()) is not None:
            results.append(await operation(n))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results


async def until_idle(
    processes: Processes, names: Sequence[str], idle: dict[str, float], within: float = 180
) -> None:
    """Waits until ``names`` together use no more than their idle rate plus 3 % of a core over
    2 s: what the operations set off has finished."""
    deadline = time.monotonic() + within
    threshold = sum(idle.get(name, 0.0) for name in names) + 0.03
    while True:
        before = processes.read()
        await asyncio.sleep(2.0)
        used = cpu_used(before, processes.read())
        if sum(used.get(name, 0.0) for name in names) / 2.0 <= threshold:
            return
        if time.monotonic() > deadline:
            say(f"  still busy after {within:.0f} s; reading the CPU anyway")
            return


async def idle_rates(processes: Processes, seconds: float) -> dict[str, float]:
    """CPU seconds per second each process uses with nothing to do."""
    before = processes.read()
    await asyncio.sleep(seconds)
    used = cpu_used(before, processes.read())
    return {name: cpu / seconds for name, cpu in used.items()}


async def step(
    label: str,
    processes: Processes,
    names: Sequence[str],
    idle: dict[str, float],
    work: Callable[[], Awaitable[int]],
) -> dict[str, Any]:
    """Reads the CPU around ``work`` (which returns how many operations it did) and until the
    processes are idle again; CPU ms per operation by process and in all."""
    before, machine = processes.read(), machine_busy_seconds()
    started = time.monotonic()
    count = await work()
    busy = time.monotonic() - started
    await until_idle(processes, names, idle)
    seconds = time.monotonic() - started
    used = cpu_used(before, processes.read())
    machine = machine_busy_seconds() - machine
    counted = {name: used.get(name, 0.0) for name in names if name in used}
    result = {
        "operations": count,
        "seconds": round(seconds, 2),
        "per_second": count / busy if busy else 0.0,
        "cpu_ms": per_operation(counted, idle, seconds, count),
        "others_cpu_s": round(
            sum(cpu for name, cpu in used.items() if name not in names and name != "bench"), 2
        ),
        # The machine's other processes meanwhile (they slow ours down: shared cores, caches).
        "machine_others_share": round(
            max(0.0, machine - sum(used.values())) / (seconds * (os.cpu_count() or 1)), 3
        ),
    }
    say(
        f"  {label}: {count} in {busy:.1f} s, {result['cpu_ms']['total']:.2f} CPU-ms each ("
        + ", ".join(f"{k} {v:.2f}" for k, v in result["cpu_ms"].items() if k != "total")
        + ")"
    )
    return result


async def run(
    api: Api,
    bare_http: httpx.AsyncClient,
    client: Client,
    bare_queue: str,
    processes: Processes,
    *,
    min_ops: int,
    min_seconds: float,
    concurrency: int = COST_CONCURRENCY,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    pick = random.Random(11)
    await until_idle(processes, [*PRINTFLOW, *BARE_API, *BARE_WORKFLOW], {}, within=30)
    idle = await idle_rates(processes, IDLE_SECONDS)
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "idle_cpu_share": {k: round(v, 4) for k, v in idle.items()},
    }

    # The floor of the API: the bare endpoint, the same bodies.
    bare_ids: list[str] = []

    async def bare_insert(n: int) -> None:
        response = await bare_http.post("/rows", json=order_body(f"B-{tag}-{n}", FAR, api))
        if response.status_code != 201:
            raise BenchError(f"bare insert answered {response.status_code}: {response.text}")
        bare_ids.append(response.json()["id"])

    async def bare_get(n: int) -> None:
        response = await bare_http.get(f"/rows/{pick.choice(bare_ids)}")
        if response.status_code != 200:
            raise BenchError(f"bare GET answered {response.status_code}: {response.text}")

    async def count(op: Callable[[int], Awaitable[Any]]) -> int:
        return len(await run_for(op, concurrency, min_ops, min_seconds))

    async def count_all(op: Callable[[int], Awaitable[Any]], total: int) -> int:
        return len(await run_for(op, concurrency, total, 0, total))

    out["bare_insert"] = await step(
        "bare insert", processes, BARE_API, idle, lambda: count(bare_insert)
    )
    out["bare_get"] = await step("bare GET", processes, BARE_API, idle, lambda: count(bare_get))

    created: list[str] = []

    async def create(n: int) -> None:
        created.append((await api.create(order_body(f"CC-{tag}-{n}", FAR, api)))["id"])

    async def get(n: int) -> None:
        await api.get(pick.choice(created))

    async def cancel(n: int) -> None:
        await api.cancel(created[n])

    out["create"] = await step("create", processes, PRINTFLOW, idle, lambda: count(create))
    out["get"] = await step("GET", processes, PRINTFLOW, idle, lambda: count(get))
    out["cancel"] = await step(
        "cancel",
        processes,
        PRINTFLOW,
        idle,
        lambda: count_all(cancel, len(created)),
    )

    async def orders() -> int:
        made = await run_for(
            lambda n: api.create(order_body(f"CO-{tag}-{n}", SOON, api)),
            concurrency,
            min_ops,
            0,
            min_ops,
        )
        # Asked rarely: the simulator's list of requests grows with the run, and each answer
        # costs it CPU we would count.
        await sleep_until(next_boundary(SOON_PERIOD, time.time()) + 1.0)
        await wait_submitted(api.simulator_url, [o["id"] for o in made], within=300, every=1.0)
        return len(made)

    out["order"] = await step("order to the facility", processes, PRINTFLOW, idle, orders)

    async def bare_workflows() -> int:
        prefix = f"bench-cost-{tag}-"
        await run_for(
            lambda n: client.start_workflow(
                BareThree.run, id=f"{prefix}{n}", task_queue=bare_queue
            ),
            concurrency,
            min_ops,
            0,
            min_ops,
        )
        await closed_times(client, "BenchBareThree", prefix, min_ops, within=300)
        return min_ops

    out["bare_workflow"] = await step(
        "bare workflow", processes, BARE_WORKFLOW, idle, bare_workflows
    )

    def ratio(a: str, b: str) -> float:
        return float(out[a]["cpu_ms"]["total"] / out[b]["cpu_ms"]["total"])

    out["ratios"] = {
        "get": ratio("get", "bare_get"),
        "create": ratio("create", "bare_insert"),
        "order": ratio("order", "bare_workflow"),
    }
    return out
