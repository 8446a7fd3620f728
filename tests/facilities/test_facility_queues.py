"""Each facility's calls go to the task queue of the facility the order is routed to at that
moment, where ``worker.facility_workers`` (the production wiring) takes them; an order started
before facilities had queues of their own keeps using the workflow's queue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.orders import AddressChange, PrintJobRequest, PrintJobResult
from domain.facilities import Facilities, Facility, FacilityInfo, facility_task_queue
from domain.orders import OrderInput, ShippingAddress
from runtime.settings import Settings
from tests.helpers.polling import eventually
from tests.helpers.workflows import (
    OSLO,
    SYDNEY,
    Recorder,
    order_input,
    sleep_until,
    start,
    state_of,
)
from worker import WORKFLOW_RUNNER, facility_workers
from workflows.orders import OrderWorkflow


class QueueRecorder(Recorder):
    """Also remembers the task queue each print job was taken from."""

    def __init__(self) -> None:
        super().__init__()
        self.queues: list[str] = []

    @activity.defn(name="submit_print_job")
    async def submit_print_job(self, job: PrintJobRequest) -> PrintJobResult:
        self.queues.append(activity.info().task_queue)
        return await super().submit_print_job(job)


def _facility(info: FacilityInfo, country: str) -> Facility:
    return Facility(
        **info.model_dump(), countries=[country], api_token=f"tok-{info.id}", max_jobs_per_second=5
    )


@asynccontextmanager
async def workers(client: Client, rec: Recorder) -> AsyncIterator[str]:
    """The order worker and, as ``python worker.py`` runs them, one worker per facility."""
    task_queue = "tq-" + uuid.uuid4().hex
    settings = Settings(task_queue=task_queue)
    registry = Facilities([_facility(OSLO, "NO"), _facility(SYDNEY, "AU")])
    async with AsyncExitStack() as stack:
        for worker in [
            Worker(
                client,
                task_queue=task_queue,
                workflows=[OrderWorkflow],
                workflow_runner=WORKFLOW_RUNNER,
                activities=rec.activities(),
            ),
            *facility_workers(client, settings, registry, rec.activities()),
        ]:
            await stack.enter_async_context(worker)
        yield task_queue


def _with_queues(inp: OrderInput, task_queue: str) -> OrderInput:
    return inp.model_copy(update={"facility_queue_base": task_queue})


async def test_the_print_job_goes_to_the_queue_of_the_facility_at_the_cutoff(
    env: WorkflowEnvironment,
) -> None:
    rec = QueueRecorder()
    async with workers(env.client, rec) as tq:
        inp = _with_queues(order_input(await env.get_current_time()), tq)
        handle = await start(env.client, tq, inp)
        sydney = ShippingAddress.model_validate(
            {**inp.order.shipping_address.model_dump(), "country": "AU", "state": "NSW"}
        )
        await handle.execute_update(
            OrderWorkflow.update_shipping_address,
            AddressChange(shipping_address=sydney, facility=SYDNEY),
        )
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))

        await eventually("the print job", lambda: rec.jobs)
        assert [j.facility_id for j in rec.jobs] == ["sydney"]
        assert rec.queues == [facility_task_queue(tq, "sydney")] == [f"{tq}-facility-sydney"]


async def test_an_order_started_before_facility_queues_submits_on_its_own_queue(
    env: WorkflowEnvironment,
) -> None:
    rec = QueueRecorder()
    async with workers(env.client, rec) as tq:
        inp = order_input(await env.get_current_time())
        assert inp.facility_queue_base is None
        handle = await start(env.client, tq, inp)
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))

        await eventually("the print job", lambda: rec.jobs)
        assert [j.facility_id for j in rec.jobs] == ["oslo"]
        assert rec.queues == [tq]
