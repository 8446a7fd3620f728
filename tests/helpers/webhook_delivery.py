"""Webhook delivery against real parts: the time-skipping server, a real database, and a real
HTTP receiver on 127.0.0.1 that verifies every signature (a worker running only the delivery
workflow and its activities)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.webhooks.delivery import WebhookActivities
from activities.webhooks.emitter import WebhookEmitter
from db.engine import session_factory
from db.models import Merchant
from devstack.processes import TLS
from tests.helpers.webhook_receiver import Receiver
from worker import WORKFLOW_RUNNER
from workflows.client import enqueue_deliveries
from workflows.webhooks import WebhookDeliveryWorkflow

SECRET = "whsec_test-secret"


@dataclass
class Delivery:
    env: WorkflowEnvironment
    engine: AsyncEngine
    receiver: Receiver
    emitter: WebhookEmitter
    task_queue: str
    merchant_id: str


async def add_merchant(engine: AsyncEngine, webhook_url: str | None) -> str:
    merchant_id = "mer_" + uuid.uuid4().hex
    async with session_factory(engine)() as session:
        session.add(
            Merchant(
                id=merchant_id,
                name="Hook Shop",
                support_email="help@hooks.example.com",
                webhook_url=webhook_url,
                api_key_hash=uuid.uuid4().hex,
                api_key_prefix="pf_test",
                webhook_secret=SECRET,
                created_at=datetime.now(UTC),
            )
        )
        await session.commit()
    return merchant_id


@asynccontextmanager
async def running_delivery(
    env: WorkflowEnvironment, engine: AsyncEngine
) -> AsyncIterator[Delivery]:
    """A merchant whose webhooks go to a real receiver, and a worker delivering them."""
    # The receiver fails on the test server's clock, which the test skips forward.
    receiver = Receiver(secret=SECRET, clock=env.get_current_time)
    await receiver.start()
    try:
        merchant_id = await add_merchant(engine, receiver.url)
        task_queue = "hooks-" + uuid.uuid4().hex
        async with httpx.AsyncClient(verify=TLS) as http:
            activities = WebhookActivities(engine, http, allow_private=True)
            async with Worker(
                env.client,
                task_queue=task_queue,
                workflows=[WebhookDeliveryWorkflow],
                workflow_runner=WORKFLOW_RUNNER,
                activities=[activities.deliver_webhook, activities.webhook_given_up],
            ):
                yield Delivery(
                    env=env,
                    engine=engine,
                    receiver=receiver,
                    emitter=WebhookEmitter(
                        engine, partial(enqueue_deliveries, env.client, task_queue)
                    ),
                    task_queue=task_queue,
                    merchant_id=merchant_id,
                )
    finally:
        await receiver.stop()
