"""The bare baseline: N workflows of three no-op activities each, on the same server, in the
same run, on a worker process with the same settings as printflow's (``bench.bare_worker``).

Started like orders are created: at most ``concurrency`` start requests in flight, each sent
when the previous one was answered; the workflows then run on their own. The rate is N divided
by the time from the first start sent to the last workflow closed (Temporal's close times).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from temporalio.client import Client

from bench.bare import BareThree
from bench.common import BenchError, bounded


async def closed_times(
    client: Client, workflow_type: str, prefix: str, count: int, within: float
) -> list:
    """Waits until ``count`` workflows of this type whose ids start with ``prefix`` have
    completed (not an earlier step's); their executions."""
    query = (
        f'WorkflowType="{workflow_type}" AND WorkflowId STARTS_WITH "{prefix}" '
        'AND ExecutionStatus="Completed"'
    )
    deadline = time.monotonic() + within
    while (done := (await client.count_workflows(query)).count) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"only {done} of {count} {workflow_type} completed in {within:.0f} s")
        await asyncio.sleep(0.5)
    return [execution async for execution in client.list_workflows(query)]


async def run(client: Client, task_queue: str, count: int, concurrency: int) -> dict[str, Any]:
    prefix = f"bench-bare3-{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{i}" for i in range(count)]
    started = time.time()
    await bounded(
        concurrency,
        (
            lambda wid=wid: client.start_workflow(BareThree.run, id=wid, task_queue=task_queue)
            for wid in ids
        ),
    )
    starts_done = time.time()
    executions = await closed_times(client, "BenchBareThree", prefix, count, within=300)
    last = max(e.close_time.timestamp() for e in executions if e.close_time)
    seconds = last - started
    return {
        "workflows": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "starts_per_second": count / (starts_done - started),
        "sample_ids": ids[:: max(1, count // 10)],
    }
