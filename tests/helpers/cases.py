"""Support case workflows against real parts: the workflow on a Temporal server (usually the
time-skipping one), its real activities on a real database (SQLite or PostgreSQL) and a real
SMTP sink. ``case_world`` gives a test a merchant and a way to open cases as the API does.
"""

from __future__ import annotations

import asyncio
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
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.cases import SupportCaseActivities
from contracts.cases import CaseInput, CaseProjection
from db.engine import session_factory
from db.models import Merchant, SupportCase, SupportCaseMessage
from devstack.mailsink import MailSink
from domain.cases import (
    CaseCreate,
    CaseState,
    new_case_state,
    priority_for,
    rules_for,
    target_key,
)
from domain.support import Plan, load_support
from integrations.mail import Mailer
from runtime.settings import Settings
from worker import WORKFLOW_RUNNER
from workflows.cases import SupportCaseWorkflow, case_search_attributes

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
SUPPORT = load_support()
MERCHANT_EMAIL = "help@mugs.example.com"
CSM_EMAIL = "csm-anna@printflow.test"


def amsterdam(*args: int) -> datetime:
    """A wall-clock time in Amsterdam, as an aware datetime."""
    return datetime(*args, tzinfo=AMSTERDAM)  # type: ignore[misc]


def case_body(**overrides: Any) -> CaseCreate:
    body: dict[str, Any] = {
        "type": "support_request",
        "category": "orders",
        "subject": "Order stuck in production",
        "description": "Order SHOP-1001 has been in production for a week.\nCan you check?",
    }
    body.update(overrides)
    return CaseCreate.model_validate(body)


@dataclass
class CaseWorld:
    client: Client
    engine: AsyncEngine
    mail: MailSink
    task_queue: str
    merchant_id: str

    async def open(
        self,
        created_at: datetime,
        *,
        plan: Plan = Plan.FREE,
        csm_agent_id: str | None = None,
        csm_email: str | None = None,
        changes_per_run: int | None = None,
        **body: Any,
    ) -> WorkflowHandle[Any, CaseState]:
        """Stores the case as the API does (row and first message) and starts its workflow."""
        created = case_body(**body)
        case_id = "case_" + uuid.uuid4().hex
        async with session_factory(self.engine)() as session:
            numbers = list(await session.exec(select(SupportCase.number)))
        number = max(numbers, default=1000) + 1
        key = target_key(created.channel, priority_for(plan))
        rules = rules_for(SUPPORT, key, created_at.date())
        state = new_case_state(
            case_id=case_id,
            number=number,
            merchant_id=self.merchant_id,
            plan=plan,
            csm_agent_id=csm_agent_id,
            body=created,
            rules=rules,
            created_at=created_at.astimezone(UTC),
        )
        inp = CaseInput(
            case=state,
            rules=rules,
            plan=plan,
            merchant_name="Mug Shop",
            merchant_email=MERCHANT_EMAIL,
            csm_email=csm_email,
            changes_per_run=changes_per_run,
        )
        async with session_factory(self.engine)() as session:
            session.add(
                SupportCase(
                    id=case_id,
                    number=number,
                    merchant_id=self.merchant_id,
                    type=state.type.value,
                    category=state.category.value,
                    channel=state.channel.value,
                    priority=state.priority.value,
                    subject=state.subject,
                    status=state.status.value,
                    assignee_id=state.assignee_id,
                    queue=state.queue.value,
                    first_response_due_at=state.first_response_due_at,
                    sla_due_at=state.due_at,
                    sla_state=state.sla_state.value,
                    state=state.model_dump(mode="json"),
                    workflow_input=inp.model_dump(mode="json"),
                    version=state.version,
                    created_at=state.created_at,
                    updated_at=state.created_at,
                )
            )
            session.add(
                SupportCaseMessage(
                    id=f"msg_{uuid.uuid4().hex}",
                    case_id=case_id,
                    author_kind="merchant",
                    author_id=self.merchant_id,
                    body=created.description,
                    created_at=state.created_at,
                )
            )
            await session.commit()
        return await self.client.start_workflow(
            SupportCaseWorkflow.run,
            inp,
            id=case_id,
            task_queue=self.task_queue,
            search_attributes=case_search_attributes(state),
        )

    async def row(self, case_id: str) -> SupportCase:
        async with session_factory(self.engine)() as session:
            row = await session.get(SupportCase, case_id)
            assert row is not None
            return row

    async def messages(self, case_id: str) -> list[SupportCaseMessage]:
        async with session_factory(self.engine)() as session:
            return list(
                await session.exec(
                    select(SupportCaseMessage)
                    .where(SupportCaseMessage.case_id == case_id)
                    .order_by(col(SupportCaseMessage.created_at))
                )
            )

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mail.messages if address in str(m["To"])]


@asynccontextmanager
async def case_world(
    env: WorkflowEnvironment, engine: AsyncEngine, tmp_path: Path, slow_projection: float = 0.0
) -> AsyncIterator[CaseWorld]:
    """A merchant, a mail sink and a worker with the case workflow and its real activities;
    ``slow_projection``: seconds each projection waits before it writes (a slow database)."""
    async with MailSink(tmp_path / "mail", port=0) as mail:
        settings = Settings(smtp_host=mail.host, smtp_port=mail.port, public_base_url="http://api")
        merchant_id = "mer_" + uuid.uuid4().hex[:12]
        async with session_factory(engine)() as session:
            session.add(
                Merchant(
                    id=merchant_id,
                    name="Mug Shop",
                    support_email=MERCHANT_EMAIL,
                    api_key_hash=uuid.uuid4().hex,
                    api_key_prefix="pf_test",
                    webhook_secret="whsec_test",
                    created_at=datetime.now(UTC),
                )
            )
            await session.commit()
        activities = SupportCaseActivities(engine, Mailer(settings), settings.public_base_url)

        @activity.defn(name="project_case")
        async def project_case(projection: CaseProjection) -> None:
            await asyncio.sleep(slow_projection)
            await activities.project_case(projection)

        task_queue = "cases-" + uuid.uuid4().hex
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[SupportCaseWorkflow],
            workflow_runner=WORKFLOW_RUNNER,
            activities=[project_case, activities.send_case_mail],
        ):
            yield CaseWorld(env.client, engine, mail, task_queue, merchant_id)
