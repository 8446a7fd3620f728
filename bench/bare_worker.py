"""``python -m bench.bare_worker --task-queue Q``: the bare workflows' worker, as a process.

Configured exactly like printflow's worker (``worker.py``): the same settings
(``WORKER_MAX_CONCURRENT_ACTIVITIES``, ``_WORKFLOW_TASKS``, ``_CACHED_WORKFLOWS``, the shutdown
grace), the same SDK runtime (log forwarding, Prometheus metrics on its own port), the same data
converter and workflow sandbox; only its workflows, activities and task queue are the bench's.
A process of its own, as printflow's worker is, so the bench's client never shares its event
loop.

``BareSubmit``'s print jobs go out as printflow's do: ``FacilityActivities.submit_print_job``
with an HTTP client of its own (the worker's facility client), run by an activity-only worker
on a task queue of its own (``bench.bare.submit_queue``), the facilities from
``PRINTFLOW_FACILITIES_FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from contextlib import AsyncExitStack

import httpx
from temporalio.worker import Worker

from activities.facility import FacilityActivities
from bench.bare import ACTIVITIES, WORKFLOWS, submit_queue
from domain.facilities import load_facilities
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
    async with AsyncExitStack() as stack:
        # As printflow's worker builds its facility client (worker.py).
        facility_http = await stack.enter_async_context(httpx.AsyncClient(timeout=20.0))
        facility = FacilityActivities(load_facilities(settings.facilities_file), facility_http)
        workers = [
            Worker(
                client,
                task_queue=task_queue,
                workflows=WORKFLOWS,
                activities=ACTIVITIES,
                workflow_runner=WORKFLOW_RUNNER,
                graceful_shutdown_timeout=settings.worker_shutdown_grace,
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                max_cached_workflows=settings.worker_max_cached_workflows,
            ),
            Worker(
                client,
                task_queue=submit_queue(task_queue),
                activities=[facility.submit_print_job],
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                graceful_shutdown_timeout=settings.worker_shutdown_grace,
            ),
        ]
        log.info("bare worker polling %s and %s", task_queue, submit_queue(task_queue))
        for worker in workers:
            await stack.enter_async_context(worker)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_worker")
    parser.add_argument("--task-queue", required=True)
    asyncio.run(run(parser.parse_args().task_queue))


if __name__ == "__main__":
    main()
