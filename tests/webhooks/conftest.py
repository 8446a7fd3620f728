"""Webhook fixtures: ``delivery`` (the delivery workflow on the time-skipping server, a real
database and a real receiver, see tests/helpers/webhook_delivery.py) and ``full_api`` (the
in-process API with webhooks, for the deliveries endpoint tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from tests.helpers.production import full_api
from tests.helpers.webhook_delivery import Delivery, running_delivery

__all__ = ["full_api"]


@pytest.fixture
async def delivery(env: WorkflowEnvironment, engine: AsyncEngine) -> AsyncIterator[Delivery]:
    async with running_delivery(env, engine) as running:
        yield running
