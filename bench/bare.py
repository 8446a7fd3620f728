"""The bare workflows printflow is compared with, and their no-op activities.

A module of its own, because the workflow sandbox re-imports a workflow's module (which
``__main__`` cannot be). Run by ``bench.bare_worker``, a worker process configured like
printflow's.

- ``BareThree``: three no-op activities, one after the other: what this server, this SDK and
  these worker settings do for a workflow with as many round trips as an order on its way to the
  facility (start, timer, print job, projection);
- ``BareWave``: a timer until a given moment, then one activity that says when it ran: N of
  them released together are the cutoff wave without printflow;
- ``BareSubmit``: a timer until a given moment, then printflow's own print job submission
  (``FacilityActivities.submit_print_job``: the same HTTP call to the facility, through the
  same client) on a task queue of its own, as printflow's worker runs it on the facility's:
  the cutoff wave with nothing of printflow but the call it must make.
"""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from activities.facility import FacilityActivities
    from contracts.orders import PrintJobRequest

ACTIVITY_TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@activity.defn(name="bench_stamp")
async def stamp() -> float:
    """When it ran (epoch seconds), as the facility simulator stamps a print job's arrival."""
    return time.time()


@workflow.defn(name="BenchBareThree")
class BareThree:
    @workflow.run
    async def run(self) -> None:
        for _ in range(3):
            await workflow.execute_activity(noop, start_to_close_timeout=ACTIVITY_TIMEOUT)


@workflow.defn(name="BenchBareWave")
class BareWave:
    @workflow.run
    async def run(self, release_at: float) -> float:
        delay = release_at - workflow.now().timestamp()
        if delay > 0:
            await workflow.sleep(delay)
        return await workflow.execute_activity(stamp, start_to_close_timeout=ACTIVITY_TIMEOUT)


def submit_queue(task_queue: str) -> str:
    """The bare submissions' own task queue, beside the bare worker's (as a facility's is)."""
    return f"{task_queue}-facility"


@workflow.defn(name="BenchBareSubmit")
class BareSubmit:
    @workflow.run
    async def run(self, release_at: float, job: PrintJobRequest) -> str:
        delay = release_at - workflow.now().timestamp()
        if delay > 0:
            await workflow.sleep(delay)
        result = await workflow.execute_activity_method(
            FacilityActivities.submit_print_job,
            job,
            task_queue=submit_queue(workflow.info().task_queue),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
        )
        return result.job_id


WORKFLOWS = [BareThree, BareWave, BareSubmit]
ACTIVITIES = [noop, stamp]
