"""Worker memory with N orders waiting: the resident set (VmRSS, from /proc) of the worker
process that ``make run`` starts (``python worker.py``), once N orders for ``bench-far`` wait
for their cutoff hours away.

The orders are created through the API by ``concurrency`` clients; the measurement waits until
Temporal lists N of them running and the worker has gone quiet (under 5% of a core for 2 s), so
every workflow has run its first task and sits in the worker's sticky cache or was evicted from
it. The cache holds at most ``WORKER_MAX_CACHED_WORKFLOWS`` (500 by default) workflows; the
rest cost the worker nothing until their timer fires. Measured first, so the N orders are the
only workflows open.

Reported with the RSS, from the worker's own metrics: how many workflows its cache holds, how
many it evicted to make room; and, from a sample of histories, how many first workflow tasks
timed out (an overloaded machine makes the server time tasks out, and the worker drops those
workflows from its cache: a small RSS then means a thrashing worker, not a frugal one).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.common import FAR, Api, BenchError, rss_mb, wait_quiet, worker_metrics
from bench.orders import create_many

CACHE_METRICS = (
    "temporal_sticky_cache_size",
    "temporal_sticky_cache_total_forced_eviction",
    "temporal_sticky_cache_miss",
)


async def timed_out_tasks(client: Client, order_ids: list[str]) -> int:
    """How many of these workflows had a workflow task time out."""
    hit = 0
    for order_id in order_ids:
        history = await client.get_workflow_handle(order_id).fetch_history()
        if any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT for e in history.events
        ):
            hit += 1
    return hit


async def run(
    api: Api,
    client: Client,
    worker_pid: int,
    metrics_port: int,
    count: int,
    concurrency: int,
    within: float,
) -> dict[str, Any]:
    before = rss_mb(worker_pid)
    created = await create_many(api, FAR, count, concurrency)
    query = f'WorkflowType="OrderWorkflow" AND Facility="{FAR}" AND ExecutionStatus="Running"'
    deadline = time.monotonic() + within
    while (running := (await client.count_workflows(query)).count) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"only {running} of {count} waiting orders started in {within:.0f} s")
        await asyncio.sleep(0.5)
    busy = await wait_quiet([worker_pid], within=max(10.0, deadline - time.monotonic()))
    after = rss_mb(worker_pid)
    cache = await worker_metrics(metrics_port, CACHE_METRICS)
    sample = created["ids"][:: max(1, count // 50)]
    return {
        "orders_waiting": running,
        "rss_before_mb": before["rss_mb"],
        "rss_mb": after["rss_mb"],
        "peak_mb": after["peak_mb"],
        "worker_cpu_share_when_read": busy,
        "creates_per_second": created["per_second"],
        "cached_workflows": cache["temporal_sticky_cache_size"],
        "cache_forced_evictions": cache["temporal_sticky_cache_total_forced_eviction"],
        "cache_misses": cache["temporal_sticky_cache_miss"],
        "sampled_with_task_timeout": await timed_out_tasks(client, sample),
        "sampled": len(sample),
    }
