"""The API against real parts: a Temporal dev server, a worker with the real activities, a real
database (SQLite and PostgreSQL), and the facility simulator in-process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.print_jobs import FacilityActivities
from activities.projection import ProjectionActivities
from api.main import create_app
from db.engine import create_engine
from domain.facilities import Facilities
from settings import Settings
from simulator.app import SimulatorConfig
from simulator.app import create_app as create_simulator
from worker import WORKFLOW_RUNNER, WORKFLOWS, activities_for

ADMIN_TOKEN = "admin-test-token"
FACILITY_URL = "http://facility.test"

# Iceland's facility cuts off every 2 seconds so tests can watch an order reach production;
# everyone else prints at midnight, so their orders stay editable for the whole test.
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


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    settings: Settings
    simulator: FastAPI
    temporal: Any

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


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    facilities_file = tmp_path / "facilities.json"
    facilities_file.write_text(json.dumps(TEST_FACILITIES))
    settings = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        task_queue="api-" + uuid.uuid4().hex,
        facilities_file=facilities_file,
    )
    simulator = create_simulator(
        SimulatorConfig(tokens={f["api_token"]: f["id"] for f in TEST_FACILITIES})
    )
    app = create_app(settings, temporal=dev_env.client)
    async with app.router.lifespan_context(app), simulator.router.lifespan_context(simulator):
        worker_engine = create_engine(database_url)
        facility_http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=simulator), base_url=FACILITY_URL
        )
        worker = Worker(
            dev_env.client,
            task_queue=settings.task_queue,
            workflows=list(WORKFLOWS),
            workflow_runner=WORKFLOW_RUNNER,
            activities=activities_for(
                ProjectionActivities(worker_engine),
                FacilityActivities(Facilities.load(facilities_file), facility_http),
            ),
        )
        async with (
            worker,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api"
            ) as client,
        ):
            yield Api(client, app, settings, simulator, dev_env.client)
        await facility_http.aclose()
        await worker_engine.dispose()
