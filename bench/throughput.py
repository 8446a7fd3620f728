"""``make bench``: how many orders per second one machine takes, against Temporal's own ceiling.

One run, one Temporal dev server (SQLite file, WAL), everything on loopback:

(a) baseline: a workflow that does nothing, started and awaited N times by an in-process worker:
    what this server and this SDK can do at all;
(b) printflow: N orders created through the real API (uvicorn) and carried by the real worker
    (``python worker.py``) to ``in_production`` at the facility simulator, the facility cutting
    off every second. Reported: orders/s and its ratio to (a), the API's create latency (p50,
    p95), and the history length of an order.

Bounded: ``--orders`` (default 200) each, at most ``--concurrency`` requests in flight; the
processes are stopped at the end whatever happens. The numbers go into docs/deploying.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.nothing import Nothing
from devstack.__main__ import EXAMPLE_ORDER
from devstack.stack import SimulatorOptions, Stack, StackConfig
from worker import WORKFLOW_RUNNER

T = TypeVar("T")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


async def baseline(address: str, count: int, concurrency: int) -> dict[str, Any]:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    queue = "bench-nothing-" + uuid.uuid4().hex[:8]
    # The same sandbox as printflow's workflows, so (b)/(a) compares like with like.
    async with Worker(
        client, task_queue=queue, workflows=[Nothing], workflow_runner=WORKFLOW_RUNNER
    ):
        ids = [f"bench-nothing-{uuid.uuid4().hex}" for _ in range(count)]
        started = time.perf_counter()
        await _bounded(
            concurrency,
            (
                lambda wid=wid: client.execute_workflow(  # type: ignore[misc]
                    Nothing.run, id=wid, task_queue=queue
                )
                for wid in ids
            ),
        )
        elapsed = time.perf_counter() - started
    events = len((await client.get_workflow_handle(ids[0]).fetch_history()).events)
    return {"workflows": count, "seconds": elapsed, "per_second": count / elapsed, "events": events}


def _order(reference: str) -> dict[str, Any]:
    return {**EXAMPLE_ORDER, "order_reference_id": reference}


def _in_production(database: Path, ids: set[str]) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute("SELECT id FROM orders WHERE status = 'in_production'").fetchall()
    return len(ids & {row[0] for row in rows})


async def orders(stack: Stack, count: int, concurrency: int) -> dict[str, Any]:
    merchant = await asyncio.to_thread(stack.create_merchant, "Bench", "bench@example.com")
    headers = {"X-API-Key": merchant["api_key"]}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, limits=limits) as http:

        async def create(reference: str) -> str:
            sent = time.perf_counter()
            response = await http.post("/v1/orders", json=_order(reference), headers=headers)
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 201:
                raise RuntimeError(f"create answered {response.status_code}: {response.text}")
            return str(response.json()["id"])

        started = time.perf_counter()
        ids = await _bounded(
            concurrency,
            (lambda r=f"BENCH-{i}": create(r) for i in range(count)),  # type: ignore[misc]
        )
        created = time.perf_counter() - started
        database = Path(stack.database_url.removeprefix("sqlite:///"))
        deadline = time.monotonic() + 300
        while (done := await asyncio.to_thread(_in_production, database, set(ids))) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {count} orders reached production in 300 s")
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started

    client = await Client.connect(stack.temporal_address)
    sample = ids[:: max(1, count // 10)]
    events = [len((await client.get_workflow_handle(i).fetch_history()).events) for i in sample]
    return {
        "orders": count,
        "seconds": elapsed,
        "per_second": count / elapsed,
        "create_seconds": created,
        "creates_per_second": count / created,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "events": statistics.mean(events),
    }


async def cancels(stack: Stack, count: int, concurrency: int) -> dict[str, Any]:
    """(c) Updates: orders that wait for the merchant's approval, each canceled by the API."""
    merchant = await asyncio.to_thread(stack.create_merchant, "Bench Cancels", "c@example.com")
    headers = {"X-API-Key": merchant["api_key"]}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60, limits=limits) as http:

        async def create(reference: str) -> str:
            body = _order(reference) | {"approval": "manual"}
            response = await http.post("/v1/orders", json=body, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"create answered {response.status_code}: {response.text}")
            return str(response.json()["id"])

        async def cancel(order_id: str) -> None:
            sent = time.perf_counter()
            response = await http.post(f"/v1/orders/{order_id}/cancel", headers=headers, json={})
            latencies.append(time.perf_counter() - sent)
            if response.status_code != 200 or response.json()["status"] != "canceled":
                raise RuntimeError(f"cancel answered {response.status_code}: {response.text}")

        ids = await _bounded(
            concurrency,
            (lambda r=f"CANCEL-{i}": create(r) for i in range(count)),  # type: ignore[misc]
        )
        await asyncio.sleep(1)  # let the workflows start
        await _bounded(concurrency, (lambda i=i: cancel(i) for i in ids))  # type: ignore[misc]

    client = await Client.connect(stack.temporal_address)
    sample = ids[:: max(1, count // 10)]
    events = [len((await client.get_workflow_handle(i).fetch_history()).events) for i in sample]
    return {
        "cancels": count,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "events": statistics.mean(events),
    }


def _report(a: dict[str, Any], b: dict[str, Any], c: dict[str, Any], workers: int) -> str:
    ratio = b["per_second"] / a["per_second"]
    return "\n".join(
        [
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"dev server on SQLite (WAL), {workers} printflow worker(s)",
            "",
            "| measurement | result |",
            "|---|---|",
            f"| (a) empty workflow, start to completion | {a['per_second']:.0f}/s "
            f"({a['workflows']} in {a['seconds']:.1f} s, {a['events']} history events) |",
            f"| (b) order, API create to in_production | {b['per_second']:.1f}/s "
            f"({b['orders']} in {b['seconds']:.1f} s) |",
            f"| (b) / (a) | {ratio:.2f} |",
            f"| API create, all {b['orders']} | {b['creates_per_second']:.1f}/s, "
            f"p50 {b['p50_ms']:.0f} ms, p95 {b['p95_ms']:.0f} ms |",
            f"| history events per order (to in_production) | {b['events']:.0f} |",
            f"| (c) cancel (an Update), {c['cancels']} orders | p50 {c['p50_ms']:.0f} ms, "
            f"p95 {c['p95_ms']:.0f} ms |",
            f"| history events of an order canceled while pending approval | {c['events']:.0f} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--orders", type=int, default=200, help="orders (and empty workflows)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--workers", type=int, default=1, help="printflow worker processes")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.orders <= 2000:
        parser.error("--orders must be between 1 and 2000: this runs on one machine")

    with tempfile.TemporaryDirectory(prefix="printflow-bench-") as tmp:
        facilities = Path(tmp) / "facilities.json"
        config = StackConfig.ephemeral(
            Path(tmp) / "stack",
            facilities_file=facilities,
            simulator=SimulatorOptions(report_events=False),
            env={
                "PRINTFLOW_LOG_LEVEL": "WARNING",
                "PRINTFLOW_WORKER_METRICS_PORT": "0",
                # The first cutoff a second after an order arrives: (b) measures the pipeline.
                "PRINTFLOW_PERSONALIZATION_EMAIL_DELAY": str(
                    int(timedelta(hours=1).total_seconds())
                ),
            },
        )
        stack = Stack(config)
        facilities.write_text(
            json.dumps(
                [
                    {
                        "id": "bench",
                        "name": "Bench Prints",
                        "timezone": "Europe/Berlin",
                        "countries": ["*"],
                        "api_url": stack.simulator_url,
                        "api_token": "tok-bench",
                        "schedule": {"every_seconds": 1},
                    }
                ]
            )
        )
        print(f"starting the stack in {tmp} ...", file=sys.stderr, flush=True)
        with stack:
            for n in range(2, args.workers + 1):
                stack.start_worker(f"worker-{n}")
            print(f"(a) {args.orders} empty workflows ...", file=sys.stderr, flush=True)
            a = asyncio.run(baseline(stack.temporal_address, args.orders, args.concurrency))
            print(f"(b) {args.orders} orders through the API ...", file=sys.stderr, flush=True)
            b = asyncio.run(orders(stack, args.orders, args.concurrency))
            print(f"(c) {args.orders // 2} cancels ...", file=sys.stderr, flush=True)
            c = asyncio.run(cancels(stack, max(1, args.orders // 2), args.concurrency))
    print(
        json.dumps({"baseline": a, "orders": b, "cancels": c}, indent=2)
        if args.json
        else _report(a, b, c, args.workers)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
