"""The API with everything after submission wired in, against real parts.

Like ``tests/api/conftest.py``'s ``api`` fixture (real dev server, real database, a worker with
the real activities, the facility simulator in-process), plus what this part adds: the webhook
emitter and delivery, a real webhook receiver on 127.0.0.1, hold e-mails through a real SMTP
sink. Facility events are posted by the tests themselves, with the facility's token.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.holds import HoldActivities
from activities.mail import Mailer
from activities.personalization import PersonalizationActivities
from activities.print_jobs import FacilityActivities
from activities.projection import ProjectionActivities
from activities.webhooks import WebhookActivities, WebhookEmitter
from api.main import create_app
from db.engine import create_engine
from devstack.mailsink import MailSink
from domain.facilities import Facilities
from settings import Settings
from simulator.app import SimulatorConfig
from simulator.app import create_app as create_simulator
from tests.api.conftest import ADMIN_TOKEN, FACILITY_URL, TEST_FACILITIES, Api, order_json
from tests.webhooks.receiver import Receiver
from worker import WORKFLOW_RUNNER, WORKFLOWS, activities_for

TOKENS = {f["id"]: f["api_token"] for f in TEST_FACILITIES}


@dataclass
class FullApi(Api):
    mail: MailSink
    receiver: Receiver

    async def hooked_merchant(self, name: str = "Hook Shop", **extra: Any) -> dict[str, Any]:
        """A merchant whose webhooks go to this test's receiver (which learns its secret)."""
        body = {"name": name, "support_email": "help@hooks.example.com"}
        body["webhook_url"] = self.receiver.url
        body.update(extra)
        response = await self.client.post(
            "/v1/admin/merchants", json=body, headers={"X-Admin-Token": ADMIN_TOKEN}
        )
        assert response.status_code == 201, response.text
        merchant = dict(response.json())
        self.receiver.secret = merchant["webhook_secret"]
        return merchant

    async def event(
        self, order_id: str, type_: str, facility: str = "reykjavik", **extra: Any
    ) -> httpx.Response:
        """A facility report, posted with that facility's token."""
        body = {"event_id": "fev_" + uuid.uuid4().hex, "order_id": order_id, "type": type_}
        body.update(extra)
        return await self.client.post(
            "/v1/production/events",
            json=body,
            headers={"Authorization": f"Bearer {TOKENS[facility]}"},
        )

    async def order(self, key: dict[str, str], order_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=key)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def until(
        self,
        key: dict[str, str],
        order_id: str,
        pred: Callable[[dict[str, Any]], bool],
        timeout: float = 20,  # noqa: ASYNC109 - a test helper's deadline
    ) -> dict[str, Any]:
        """Reads the order until ``pred`` holds: the read model follows the workflow closely."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            order = await self.order(key, order_id)
            if pred(order):
                return order
            assert asyncio.get_running_loop().time() < deadline, f"never happened; last: {order}"
            await asyncio.sleep(0.1)

    async def in_production(
        self, key: dict[str, str], reference: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """An order at Reykjavik (cutoff every 2 s), once its print job is accepted."""
        created = await self.client.post(
            "/v1/orders", json=order_json(reference, country="IS", **overrides), headers=key
        )
        assert created.status_code == 201, created.text
        return await self.until(key, created.json()["id"], lambda o: o["status"] == "in_production")


def tracking(code: str) -> dict[str, Any]:
    return {
        "tracking": {
            "carrier": "DHL",
            "tracking_code": code,
            "tracking_url": f"https://tracking.example/{code}",
        }
    }


@asynccontextmanager
async def full_api_running(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[FullApi]:
    facilities_file = tmp_path / "facilities.json"
    facilities_file.write_text(json.dumps(TEST_FACILITIES))
    mail = MailSink(tmp_path / "mail")
    await mail.start()
    receiver = Receiver()
    await receiver.start()
    cfg = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        task_queue="full-" + uuid.uuid4().hex,
        facilities_file=facilities_file,
        smtp_host="127.0.0.1",
        smtp_port=mail.port,
        public_base_url="http://api",
        **settings,
    )
    simulator = create_simulator(
        SimulatorConfig(tokens={f["api_token"]: f["id"] for f in TEST_FACILITIES})
    )
    app = create_app(cfg, temporal=dev_env.client)
    try:
        async with app.router.lifespan_context(app), simulator.router.lifespan_context(simulator):
            engine = create_engine(database_url)
            facility_http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=simulator), base_url=FACILITY_URL
            )
            hooks_http = httpx.AsyncClient()
            emitter = WebhookEmitter(engine, dev_env.client, cfg.task_queue)
            mailer = Mailer(cfg)
            worker = Worker(
                dev_env.client,
                task_queue=cfg.task_queue,
                workflows=list(WORKFLOWS),
                workflow_runner=WORKFLOW_RUNNER,
                activities=activities_for(
                    ProjectionActivities(engine, emitter),
                    FacilityActivities(Facilities.load(facilities_file), facility_http),
                    PersonalizationActivities(engine, mailer, cfg.public_base_url, emitter),
                    WebhookActivities(engine, hooks_http),
                    HoldActivities(mailer, cfg.public_base_url, engine),
                ),
            )
            async with (
                worker,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://api"
                ) as client,
            ):
                yield FullApi(client, app, cfg, simulator, dev_env.client, mail, receiver)
            await facility_http.aclose()
            await hooks_http.aclose()
            await engine.dispose()
    finally:
        await receiver.stop()
        await mail.stop()


@pytest.fixture
async def full_api(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[FullApi]:
    async with full_api_running(dev_env, database_url, tmp_path) as api:
        yield api
