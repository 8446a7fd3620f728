"""The printflow worker: order workflows and every activity they call.

Several workers may run against one task queue; Temporal spreads the work between them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import httpx
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.print_jobs import FacilityActivities
from activities.projection import ProjectionActivities
from db.engine import create_engine, create_tables
from domain.facilities import load_facilities
from settings import Settings, get_settings
from workflows import search_attributes
from workflows.client import connect
from workflows.order import OrderWorkflow

log = logging.getLogger("printflow.worker")

WORKFLOWS: Sequence[type] = (OrderWorkflow,)

# Pydantic validates e-mail addresses lazily; those modules are deterministic and safe to share.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("email_validator", "idna")
)


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Registers the order search attributes that the namespace lacks (idempotent)."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server
            raise
        known = set()
    missing = {
        key.name: _indexed_type(key) for key in search_attributes.ALL if key.name not in known
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:  # another worker was quicker
            raise
    log.info("registered search attributes: %s", ", ".join(sorted(missing)))


def _indexed_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return IndexedValueType.ValueType(key.indexed_value_type)


def activities_for(
    projection: ProjectionActivities, facility: FacilityActivities
) -> list[Any]:
    return [projection.project_order, facility.submit_print_job, facility.notify_facility]


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    facilities = load_facilities(settings.facilities_file)
    async with AsyncExitStack() as stack:
        engine = create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        await create_tables(engine)
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=20.0))
        client = await connect(settings)
        await ensure_search_attributes(client, settings.temporal_namespace)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=list(WORKFLOWS),
            workflow_runner=WORKFLOW_RUNNER,
            activities=activities_for(
                ProjectionActivities(engine), FacilityActivities(facilities, http)
            ),
            graceful_shutdown_timeout=settings.print_submit_timeout,
        )
        log.info("worker polling %s on %s", settings.task_queue, settings.temporal_address)
        async with worker:
            await stop.wait()
        log.info("worker stopped")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = asyncio.Event()

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(get_settings(), stop)

    asyncio.run(_main())


if __name__ == "__main__":
    main()
