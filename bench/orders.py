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
(arrivals at random at a few rates, each sent whatever is in flight: latency below saturation),
then get, quote (``POST /v1/quotes``: the catalog's prices and the facility's next cutoff, and
one insert) and cancel at ``concurrency`` clients; cancel is an Update that the workflow accepts,
projects with a regular activity and answers. Between steps the system is left to finish what
the last one started.

With N clients in a closed loop the mean latency is N / throughput (Little's law): at 20
clients, a p99 of 50 ms asks for several hundred answers per second.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import (
    FAR,
    FAST,
    Api,
    bounded,
    latency_summary,
    order_body,
    quote_body,
    wait_submitted,
)

Settle = Callable[[], Awaitable[Any]]
OFFERED_SECONDS = 8.0


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


async def offered(api: Api, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    """Creates arriving at random (Poisson) at ``rate`` per second for ``seconds``, each sent
    when it arrives whatever is still in flight: latency against an offered load."""
    tag = uuid.uuid4().hex[:6]
    arrivals = random.Random(seed)
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    started = time.perf_counter()
    moment = 0.0
    while (moment := moment + arrivals.expovariate(rate)) < seconds:
        await asyncio.sleep(max(0.0, moment - (time.perf_counter() - started)))
        body = order_body(f"O-{tag}-{len(tasks)}", FAR, api)
        tasks.append(asyncio.create_task(api.create(body)))
    ids = [order["id"] for order in await asyncio.gather(*tasks)]
    return {
        "offered_per_second": rate,
        "requests": len(ids),
        **latency_summary([api.created[i][1] for i in ids]),
        "ids": ids,
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
) -> dict[str, Any]:
    sweep: list[dict[str, Any]] = []
    main: dict[str, Any] = {}
    for level in sorted(set(levels) | {concurrency}):
        await settle()
        count = requests if level == concurrency else max(100, 10 * level)
        step = await create_many(api, FAR, count, level)
        sweep.append(step)
        if level == concurrency:
            main = step
    open_loop: list[dict[str, Any]] = []
    for n, rate in enumerate(rates):
        await settle()
        open_loop.append(await offered(api, rate, OFFERED_SECONDS, seed=n))
    ids = [oid for step in sweep + open_loop for oid in step["ids"]]

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
        "canceled_ids": to_cancel,
    }
