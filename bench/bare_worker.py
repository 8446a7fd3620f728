"""``python -m bench.bare_worker --task-queue Q``: the bare workflows' worker, as a process.

Configured exactly like printflow's worker (``worker.py``): the same settings
(``WORKER_MAX_CONCURRENT_ACTIVITIES``, ``_WORKFLOW_TASKS``, ``_CACHED_WORKFLOWS``, the shutdown
grace), the same SDK runtime (log forwarding, Prometheus metrics on its own port), the same data
converter and workflow sandbox; only its workflows, activities and task queue are the bench's.
A process of its own, as printflow's worker is, so the bench's client never shares its event
loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from temporalio.worker import Worker

from bench.bare import ACTIVITIES, WORKFLOWS
from runtime.startup import configure_process, temporal_runtime
from worker import WORKFLOW_RUNNER
from workflows.client import connect

log = logging.getLogger("printflow.bench")


async def run(task_queue: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings = configure_process()
    client = await connect(settings, runtime=temporal_runtime(settings.worker_metrics_port))
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        workflow_runner=WORKFLOW_RUNNER,
        graceful_shutdown_timeout=settings.worker_shutdown_grace,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_cached_workflows=settings.worker_max_cached_workflows,
    )
    log.info("bare worker polling %s", task_queue)
    async with worker:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_worker")
    parser.add_argument("--task-queue", required=True)
    asyncio.run(run(parser.parse_args().task_queue))


if __name__ == "__main__":
    main()
