"""Orders through the real API: how many reach the facility per second, and how long merchants
wait for create, get and cancel.

Throughput: N orders for ``bench-fast`` (a cutoff every second), created by ``concurrency``
clients in a closed loop (each sends its next request when the last is answered), carried by
the real worker to the facility simulator. The rate is N divided by the time from the first
create sent to the last print job received (the simulator's own timestamps).

Latency: orders for ``bench-far`` (they wait for a cutoff hours away, as real orders wait for
tonight's), so each create costs what it costs in production: the API's inserts and commit, the
workflow start right after the answer, and the workflow's first task (its timer). Creates are
measured at several numbers of concurrent clients in a closed loop, then as an offered load
(arrivals at random at a few rates, each sent whatever is in flight: latency below saturation).
The goals' load comes next (``mixed``): creates arriving at random at half the create capacity,
with GETs and cancels arriving at random alongside; its p99s are the ones the goals name. The
capacity is what the stack sustains: the closed loop's creates at ``concurrency`` clients
divided by the time from the first create to the processes going quiet again, since each
create's workflow start, file check and first task follow its answer (the API alone answers
faster than that, for a while). Then, as information, get, quote
(``POST /v1/quotes``: the catalog's prices and the facility's next cutoff, and one insert) and
cancel at ``concurrency`` clients; cancel is an Update that the workflow accepts, projects with
a regular activity and answers. Between steps the system is left to finish what
the last one started.

With N clients in a closed loop the mean latency is N / throughput (Little's law): at 20
clients, a p99 of 50 ms asks for several hundred answers per second.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from bench.common import (
    FAR,
    FAST,
    Api,
    bounded,
    latency_summary,
    order_body,
    poisson_arrivals,
    quote_body,
    wait_submitted,
)

T = TypeVar("T")
Settle = Callable[[], Awaitable[Any]]
OFFERED_SECONDS = 8.0
# The goals' offered load (``mixed``): creates at half the capacity the closed loop measured,
# for this long, with GETs and cancels at these shares of that rate.
MIXED_SECONDS = 30.0
# The quiet window ``drain`` ends with (``bench.common.wait_quiet``): the work ended before it.
QUIET_S = 2.0
GET_SHARE = 0.5
CANCEL_SHARE = 0.2


async def throughput(
    api: Api, simulator_url: str, count: int, concurrency: int, within: float = 300
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    started = time.time()
    orders = await bounded(
        concurrency,
        (lambda i=i: api.create(order_body(f"TP-{tag}-{i}", FAST, api)) for i in range(count)),
    )
    created = time.time()
    ids = [order["id"] for order in orders]
    arrived = await wait_submitted(simulator_url, ids, within)
    seconds = max(arrived.values()) - started
    return {
        "orders": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "creates_per_second": count / (created - started),
        "create": latency_summary([api.created[i][1] for i in ids]),
        "ids": ids,
    }


async def create_many(api: Api, facility: str, count: int, concurrency: int, **extra: Any) -> dict:
    """``count`` orders by ``concurrency`` clients; their ids, latency and rate."""
    tag = uuid.uuid4().hex[:6]
    started = time.perf_counter()
    orders = await bounded(
        concurrency,
        (
            lambda i=i: api.create(order_body(f"L-{tag}-{i}", facility, api, **extra))
            for i in range(count)
        ),
    )
    seconds = time.perf_counter() - started
    ids = [order["id"] for order in orders]
    return {
        "concurrency": concurrency,
        "requests": count,
        "per_second": count / seconds,
        **latency_summary([api.created[i][1] for i in ids]),
        "ids": ids,
    }


async def capacity(api: Api, count: int, concurrency: int, drain: Settle) -> dict[str, Any]:
    """The create capacity: ``count`` creates by ``concurrency`` clients in a closed loop
    (``create_many``), with ``sustained_per_second``, the rate the stack sustains. Answered is
    not done: each create's workflow start, file check and first task follow the answer, so the
    rate counts until ``drain`` saw the processes quiet again."""
    started = time.perf_counter()
    step = await create_many(api, FAR, count, concurrency)
    await drain()
    step["sustained_per_second"] = count / (time.perf_counter() - started - QUIET_S)
    return step


async def quotes(api: Api, count: int, concurrency: int) -> dict[str, Any]:
    """``count`` quotes by ``concurrency`` clients in a closed loop; their latency and rate."""
    body = quote_body()
    started = time.perf_counter()
    seconds = await bounded(concurrency, (lambda: api.quote(body) for _ in range(count)))
    return {
        "requests": count,
        "per_second": count / (time.perf_counter() - started),
        **latency_summary(seconds),
    }


async def arriving(
    moments: list[float], send: Callable[[int], Coroutine[Any, Any, T]], started: float
) -> list[T]:
    """``send(n)`` at each of ``moments`` (seconds after ``started``, ``time.perf_counter``),
    whatever is still in flight: an open loop."""
    tasks: list[asyncio.Task[T]] = []
    for n, moment in enumerate(moments):
        await asyncio.sleep(max(0.0, moment - (time.perf_counter() - started)))
        tasks.append(asyncio.create_task(send(n)))
    return await asyncio.gather(*tasks)


async def offered(api: Api, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    """Creates arriving at random (Poisson) at ``rate`` per second for ``seconds``, each sent
    when it arrives whatever is still in flight: latency against an offered load."""
    tag = uuid.uuid4().hex[:6]
    made = await arriving(
        poisson_arrivals(rate, seconds, seed),
        lambda n: api.create(order_body(f"O-{tag}-{n}", FAR, api)),
        time.perf_counter(),
    )
    ids = [order["id"] for order in made]
    return {
        "offered_per_second": rate,
        "requests": len(ids),
        **latency_summary([api.created[i][1] for i in ids]),
        "ids": ids,
    }


async def mixed(
    api: Api, rate: float, seconds: float, existing: list[str], seed: int
) -> dict[str, Any]:
    """The goals' offered load: creates arriving at random at ``rate`` per second (half the
    measured create capacity) for ``seconds``, and meanwhile, as independent random arrivals,
    GETs at ``rate`` × ``GET_SHARE`` of orders created before (``existing``) and cancels at
    ``rate`` × ``CANCEL_SHARE`` of others of them. Each request is sent when it arrives,
    whatever is in flight. Latency of each kind; the canceled ids."""
    tag = uuid.uuid4().hex[:6]
    picker = random.Random(seed)
    to_cancel = picker.sample(existing, len(existing))
    started = time.perf_counter()
    create_at = poisson_arrivals(rate, seconds, seed)
    get_at = poisson_arrivals(rate * GET_SHARE, seconds, seed + 1)
    cancel_at = poisson_arrivals(rate * CANCEL_SHARE, seconds, seed + 2)[: len(to_cancel)]
    kept = set(existing) - set(to_cancel[: len(cancel_at)])
    readable = [oid for oid in existing if oid in kept]

    async def get(n: int) -> float:
        return (await api.get(picker.choice(readable)))[1]

    made, got, canceled = await asyncio.gather(
        arriving(create_at, lambda n: api.create(order_body(f"M-{tag}-{n}", FAR, api)), started),
        arriving(get_at, get, started),
        arriving(cancel_at, lambda n: api.cancel(to_cancel[n]), started),
    )
    return {
        "offered_per_second": rate,
        "seconds": seconds,
        "get_per_second": rate * GET_SHARE,
        "cancel_per_second": rate * CANCEL_SHARE,
        "create": latency_summary([api.created[o["id"]][1] for o in made]),
        "get": latency_summary(got),
        "cancel": latency_summary(canceled),
        "ids": [o["id"] for o in made],
        "canceled_ids": to_cancel[: len(cancel_at)],
    }


async def latency(
    api: Api,
    *,
    concurrency: int,
    requests: int,
    cancels: int,
    levels: list[int],
    rates: list[float],
    settle: Settle,
    drain: Settle,
    mixed_seconds: float = MIXED_SECONDS,
) -> dict[str, Any]:
    sweep: list[dict[str, Any]] = []
    main: dict[str, Any] = {}
    for level in sorted(set(levels) | {concurrency}):
        await settle()
        if level == concurrency:
            main = step = await capacity(api, requests, concurrency, drain)
        else:
            step = await create_many(api, FAR, max(100, 10 * level), level)
        sweep.append(step)
    open_loop: list[dict[str, Any]] = []
    for n, rate in enumerate(rates):
        await settle()
        open_loop.append(await offered(api, rate, OFFERED_SECONDS, seed=n))
    ids = [oid for step in sweep + open_loop for oid in step["ids"]]

    # The goals' load: half the creates per second the stack sustains.
    rate = main["sustained_per_second"]
    await settle()
    mix = await mixed(api, rate / 2, mixed_seconds, ids, seed=100)
    mix["capacity_per_second"] = rate
    gone = set(mix.pop("canceled_ids"))
    ids = [oid for oid in ids if oid not in gone] + mix.pop("ids")

    await settle()
    picker = random.Random(7)
    targets = [picker.choice(ids) for _ in range(requests)]

    async def get(order_id: str) -> float:
        return (await api.get(order_id))[1]

    get_seconds = await bounded(concurrency, (lambda o=o: get(o) for o in targets))

    await settle()
    quoted = await quotes(api, requests, concurrency)

    await settle()
    to_cancel = picker.sample(ids, min(cancels, len(ids)))
    cancel_seconds = await bounded(concurrency, (lambda o=o: api.cancel(o) for o in to_cancel))
    for step in sweep + open_loop:
        del step["ids"]
    return {
        "concurrency": concurrency,
        "create": {k: v for k, v in main.items() if k not in ("ids", "concurrency")},
        "get": latency_summary(get_seconds),
        "quote": quoted,
        "cancel": latency_summary(cancel_seconds),
        "sweep": sweep,
        "offered": open_loop,
        "mixed": mix,
        "canceled_ids": to_cancel + sorted(gone),
    }
