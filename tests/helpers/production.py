"""The API of ``tests/helpers/api.py`` plus a real webhook receiver on 127.0.0.1.

Facility events are posted by the tests themselves, with the facility's token.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers.api import ADMIN_TOKEN, TEST_FACILITIES, Api, order_json, running_api
from tests.helpers.webhook_receiver import Receiver

TOKENS = {f["id"]: f["api_token"] for f in TEST_FACILITIES}


@dataclass
class FullApi(Api):
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
    receiver = Receiver()
    await receiver.start()
    try:
        async with running_api(dev_env.client, database_url, tmp_path, **settings) as api:
            yield FullApi(**{f.name: getattr(api, f.name) for f in fields(api)}, receiver=receiver)
    finally:
        await receiver.stop()


@pytest.fixture
async def full_api(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[FullApi]:
    async with full_api_running(dev_env, database_url, tmp_path) as api:
        yield api
