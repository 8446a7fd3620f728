"""Customer contact workflows against real parts: the workflow on a Temporal server (usually the
time-skipping one), its real activities on a real database (SQLite or PostgreSQL) and a real
SMTP sink. ``contact_world`` gives a test a merchant in Berlin (country DE), one of its orders,
and a way to open contacts as the API does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.contacts import CustomerContactActivities
from contracts.contacts import ContactInput
from db.engine import session_factory
from db.models import (
    CustomerContact,
    CustomerContactDeadline,
    CustomerContactMessage,
    Merchant,
    Order,
)
from devstack.mailsink import MailSink
from domain.contacts import ContactState, contact_rules, new_contact_state
from domain.support import load_support
from domain.support_ids import generate_support_id
from integrations.mail import Mailer
from runtime.settings import Settings
from tests.helpers.mail import text_of
from worker import WORKFLOW_RUNNER
from workflows.contacts import CustomerContactWorkflow, contact_search_attributes

BERLIN = ZoneInfo("Europe/Berlin")
SUPPORT = load_support()
MERCHANT_EMAIL = "help@mugs.example.com"
CUSTOMER_EMAIL = "erika@example.com"
LINK = re.compile(r"https?://\S+/c/[A-Za-z0-9_-]{20,}")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def link_in(message: EmailMessage) -> str:
    found = LINK.search(text_of(message))
    assert found, text_of(message)
    return found.group(0)


@dataclass
class ContactWorld:
    client: Client
    engine: AsyncEngine
    mail: MailSink
    task_queue: str
    merchant_id: str
    order_id: str
    support_id: str

    async def open(
        self,
        created_at: datetime,
        body: str = "Your address seems incomplete.",
        *,
        changes_per_run: int | None = None,
    ) -> WorkflowHandle[Any, ContactState]:
        """Stores the contact as the API does (row and first message), starts its workflow."""
        contact_id = "con_" + uuid.uuid4().hex
        created = created_at.astimezone(UTC)
        state = new_contact_state(
            contact_id=contact_id,
            merchant_id=self.merchant_id,
            order_id=self.order_id,
            support_id=self.support_id,
            reason="invalid_address",
            subject="About your delivery address",
            created_at=created,
        )
        rules = contact_rules(SUPPORT, "Europe/Berlin", "DE", created.date())
        first = "msg_" + uuid.uuid4().hex
        inp = ContactInput(
            contact=state,
            rules=rules,
            first_message_id=first,
            first_body=body,
            merchant_name="Mug Shop",
            merchant_email=MERCHANT_EMAIL,
            customer_email=CUSTOMER_EMAIL,
            order_reference_id="SHOP-1001",
            changes_per_run=changes_per_run,
        )
        async with session_factory(self.engine)() as session:
            session.add(
                CustomerContact(
                    id=contact_id,
                    merchant_id=self.merchant_id,
                    order_id=self.order_id,
                    support_id=self.support_id,
                    reason=state.reason,
                    subject=state.subject,
                    status=state.status.value,
                    sla_state=state.sla_state.value,
                    state=state.model_dump(mode="json"),
                    workflow_input=inp.model_dump(mode="json"),
                    version=state.version,
                    created_at=created,
                    updated_at=created,
                )
            )
            await session.flush()
            session.add(
                CustomerContactMessage(
                    id=first, contact_id=contact_id, author_kind="merchant", body=body,
                    created_at=created,
                )
            )  # fmt: skip
            await session.commit()
        return await self.client.start_workflow(
            CustomerContactWorkflow.run,
            inp,
            id=contact_id,
            task_queue=self.task_queue,
            search_attributes=contact_search_attributes(state),
        )

    async def row(self, contact_id: str) -> CustomerContact:
        async with session_factory(self.engine)() as session:
            row = await session.get(CustomerContact, contact_id)
            assert row is not None
            return row

    async def messages(self, contact_id: str) -> list[CustomerContactMessage]:
        async with session_factory(self.engine)() as session:
            return list(
                await session.exec(
                    select(CustomerContactMessage)
                    .where(CustomerContactMessage.contact_id == contact_id)
                    .order_by(col(CustomerContactMessage.created_at))
                )
            )

    async def deadlines(self, contact_id: str) -> list[CustomerContactDeadline]:
        async with session_factory(self.engine)() as session:
            return list(
                await session.exec(
                    select(CustomerContactDeadline)
                    .where(CustomerContactDeadline.contact_id == contact_id)
                    .order_by(col(CustomerContactDeadline.started_at))
                )
            )

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mail.messages if address in str(m["To"])]


@asynccontextmanager
async def contact_world(
    env: WorkflowEnvironment, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[ContactWorld]:
    """A merchant in Berlin with one order, a mail sink and a worker with the contact workflow
    and its real activities."""
    async with MailSink(tmp_path / "mail", port=0) as mail:
        settings = Settings(smtp_host=mail.host, smtp_port=mail.port, public_base_url="http://api")
        merchant_id = "mer_" + uuid.uuid4().hex[:12]
        order_id = "ord_" + uuid.uuid4().hex[:12]
        support_id = generate_support_id()
        now = datetime.now(UTC)
        async with session_factory(engine)() as session:
            session.add(
                Merchant(
                    id=merchant_id,
                    name="Mug Shop",
                    support_email=MERCHANT_EMAIL,
                    api_key_hash=uuid.uuid4().hex,
                    api_key_prefix="pf_test",
                    webhook_secret="whsec_test",
                    created_at=now,
                    timezone="Europe/Berlin",
                    country="DE",
                )
            )
            await session.flush()
            session.add(
                Order(
                    id=order_id,
                    merchant_id=merchant_id,
                    order_reference_id="SHOP-1001",
                    support_id=support_id,
                    request_hash="0" * 64,
                    workflow_input={},
                    status="scheduled",
                    facility_id="berlin",
                    state={},
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.commit()
        activities = CustomerContactActivities(engine, Mailer(settings), settings.public_base_url)
        task_queue = "contacts-" + uuid.uuid4().hex
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[CustomerContactWorkflow],
            workflow_runner=WORKFLOW_RUNNER,
            activities=[activities.project_contact, activities.send_contact_mail],
        ):
            yield ContactWorld(
                env.client, engine, mail, task_queue, merchant_id, order_id, support_id
            )
