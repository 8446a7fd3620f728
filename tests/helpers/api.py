"""The API and its worker against real parts, for the tests that go through HTTP.

A real Temporal dev server (the session's), a real database (SQLite or PostgreSQL), a worker
with every real activity (``worker.build_activities``) and, as ``python worker.py`` runs them,
an activity-only worker per facility on its rate-limited queue (``worker.facility_workers``), a
real SMTP sink for the e-mails, and the facility simulator in-process. Facilities: Iceland's
cuts off every 2 seconds so a test can watch an order reach production; everyone else prints
at midnight, so their orders stay editable for the whole test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Interceptor, Worker

from api.main import create_app
from db.engine import create_engine
from devstack.mailsink import MailSink
from devstack.processes import TLS
from domain.facilities import Facilities
from runtime.settings import Settings
from simulator.app import SimulatorConfig
from simulator.app import create_app as create_simulator
from tests.helpers.polling import PATIENCE
from worker import (
    WORKFLOW_RUNNER,
    WORKFLOWS,
    build_activities,
    facility_workers,
    main_activities,
    preflight_worker,
)

ADMIN_TOKEN = "admin-test-token"
METRICS_TOKEN = "metrics-test-token"
FACILITY_URL = "http://facility.test"

TEST_FACILITIES = [
    {
        "id": "reykjavik",
        "name": "Reykjavik",
        "timezone": "Atlantic/Reykjavik",
        "countries": ["IS"],
        "api_url": FACILITY_URL,
        "api_token": "tok-reykjavik",
        "schedule": {"every_seconds": 2},
    },
    {
        "id": "newark",
        "name": "Newark",
        "timezone": "America/New_York",
        "countries": ["US", "CA"],
        "api_url": FACILITY_URL,
        "api_token": "tok-newark",
        "schedule": {"daily": ["00:00"], "peak_daily": ["00:00", "12:00"]},
    },
    {
        "id": "berlin",
        "name": "Berlin",
        "timezone": "Europe/Berlin",
        "countries": ["*"],
        "api_url": FACILITY_URL,
        "api_token": "tok-berlin",
        "schedule": {"daily": ["00:00"]},
    },
]


def order_json(
    reference: str | None = None, country: str = "DE", **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_reference_id": reference or f"SHOP-{uuid.uuid4().hex[:8]}",
        "shipping_address": {
            "first_name": "Erika",
            "last_name": "Mustermann",
            "address_line_1": "Unter den Linden 1",
            "city": "Berlin",
            "post_code": "10117",
            "country": country,
            "email": "erika@example.com",
        },
        "items": [
            {
                "item_reference_id": "line-1",
                "product_uid": "mug_11oz_white",
                "quantity": 1,
                "files": [{"type": "default", "url": "https://files.example/mug.png"}],
            }
        ],
    }
    if country in ("US", "CA"):
        body["shipping_address"]["state"] = "NY"
    body.update(overrides)
    return body


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    settings: Settings
    simulator: FastAPI
    temporal: Client
    mail: MailSink

    async def merchant(self, approval: str = "auto", name: str = "Mug Shop") -> dict[str, Any]:
        response = await self.client.post(
            "/v1/admin/merchants",
            json={"name": name, "support_email": "help@mugs.example.com", "approval": approval},
            headers={"X-Admin-Token": ADMIN_TOKEN},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    @staticmethod
    def auth(merchant: dict[str, Any]) -> dict[str, str]:
        return {"X-API-Key": merchant["api_key"]}

    async def until(
        self,
        key: dict[str, str],
        order_id: str,
        pred: Callable[[dict[str, Any]], bool],
        within: float = PATIENCE,
    ) -> dict[str, Any]:
        """Reads the order until ``pred`` holds: the read model follows the workflow closely."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            response = await self.client.get(f"/v1/orders/{order_id}", headers=key)
            assert response.status_code == 200, response.text
            order = dict(response.json())
            if pred(order):
                return order
            assert asyncio.get_running_loop().time() < deadline, f"never happened; last: {order}"
            await asyncio.sleep(0.1)

    async def facility(self, path: str) -> Any:
        """What the simulated facility holds (its print jobs, the requests it got)."""
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.simulator), base_url=FACILITY_URL
        ) as sim:
            return (await sim.get(path)).json()


@asynccontextmanager
async def running_api(
    temporal: Client,
    database_url: str,
    tmp_path: Path,
    *,
    base_url: str = "http://api",
    facilities: list[dict[str, Any]] = TEST_FACILITIES,
    simulator_config: dict[str, Any] | None = None,
    worker_interceptors: Sequence[Interceptor] = (),
    **overrides: Any,
) -> AsyncIterator[Api]:
    """The API (in-process, over ASGI) with its workers, on task queues of their own.

    ``facilities``: the facilities file's entries; ``simulator_config``: more
    ``SimulatorConfig`` fields (``max_jobs_per_second``…); ``worker_interceptors``: the main
    worker's (a fault in its activities); ``overrides``: settings.
    """
    facilities_file = tmp_path / "facilities.json"
    facilities_file.write_text(json.dumps(facilities))
    async with MailSink(tmp_path / "mail", port=0) as mail:
        values: dict[str, Any] = {
            "database_url": database_url,
            "admin_token": ADMIN_TOKEN,
            "task_queue": "test-" + uuid.uuid4().hex,
            "facilities_file": facilities_file,
            "smtp_host": mail.host,
            "smtp_port": mail.port,
            "public_base_url": base_url,
            # Webhook receivers of tests listen on http://127.0.0.1.
            "webhook_allow_private": True,
            # Their print files are made-up URLs: checked only by the preflight tests, which
            # serve real files and turn the checks on.
            "preflight": "off",
            # As before facilities had workers of their own: a test's end waits for nothing.
            "worker_shutdown_grace": timedelta(0),
            # Tests poll and create in bursts with one key; tests/ops/test_perimeter.py sets
            # the real limit. Open orders are recounted often so /metrics follows quickly.
            "rate_limit": "1000/s",
            "rate_limit_burst": 2000,
            "auth_failure_limit": "10000/minute",
            "metrics_token": METRICS_TOKEN,
            "metrics_refresh_interval": timedelta(seconds=0.2),
        }
        values.update(overrides)
        settings = Settings(**values)
        simulator = create_simulator(
            SimulatorConfig(
                tokens={f["api_token"]: f["id"] for f in facilities}, **(simulator_config or {})
            )
        )
        app = create_app(settings, temporal=temporal)
        async with (
            app.router.lifespan_context(app),
            simulator.router.lifespan_context(simulator),
            httpx.AsyncClient(verify=TLS) as http,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=simulator), base_url=FACILITY_URL
            ) as facility_http,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client,
        ):
            engine = create_engine(database_url)
            try:
                registry = Facilities.load(facilities_file)
                activities = build_activities(
                    settings, engine, temporal, registry, http, facility_http=facility_http
                )
                workers = [
                    Worker(
                        temporal,
                        task_queue=settings.task_queue,
                        workflows=list(WORKFLOWS),
                        workflow_runner=WORKFLOW_RUNNER,
                        activities=main_activities(activities),
                        interceptors=worker_interceptors,
                    ),
                    *facility_workers(temporal, settings, registry, activities),
                    preflight_worker(temporal, settings, activities),
                ]
                async with AsyncExitStack() as running:
                    for worker in workers:
                        await running.enter_async_context(worker)
                    yield Api(client, app, settings, simulator, temporal, mail)
            finally:
                await engine.dispose()


async def started(
    handle: WorkflowHandle[Any, Any], within: float = PATIENCE
) -> WorkflowExecutionDescription:
    """The workflow's description once the relay has started it (create does not wait)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await handle.describe()
        except RPCError as err:
            if (
                err.status != RPCStatusCode.NOT_FOUND
                or asyncio.get_running_loop().time() > deadline
            ):
                raise
        await asyncio.sleep(0.05)
