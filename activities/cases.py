"""Support cases: the read model (``support_cases``, ``support_case_messages``), the
``support_case.updated`` webhook, and the e-mails a case sends.

The projection is idempotent and ordered by the state's ``version``: a retried or late one never
overwrites a newer row, and each message is written once (its id comes from the API, or from
the workflow for the case's own notes). The webhook is stored and queued after the transaction,
so a receiver only hears of what the API already shows.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.mail import Mailer, render_email
from contracts.cases import CaseMail, CaseProjection
from db.engine import insert_new
from db.models import SupportCase, SupportCaseMessage

if TYPE_CHECKING:
    from activities.webhooks.emitter import WebhookEmitter

log = logging.getLogger("printflow.support")

SUBJECTS = {
    "agent_reply": "[Case #{number}] {subject}",
    "waiting_reminder": "Reminder: [Case #{number}] {subject} – waiting for your answer",
    "at_risk": "At risk: case #{number} ({priority}) – {subject}",
    "breached": "Breached: case #{number} ({priority}) – {subject}",
}


def subject_for(mail: CaseMail) -> str:
    return SUBJECTS[mail.kind].format(
        number=mail.number, subject=mail.subject, priority=mail.priority
    )


def format_moment(moment: datetime | None) -> str | None:
    return moment.strftime("%A %d %B %Y, %H:%M UTC") if moment else None


class SupportCaseActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        mailer: Mailer,
        public_base_url: str,
        webhooks: WebhookEmitter | None = None,
    ) -> None:
        self._engine = engine
        self._mailer = mailer
        self._api = public_base_url.rstrip("/")
        self._webhooks = webhooks

    @activity.defn
    async def project_case(self, projection: CaseProjection) -> None:
        state = projection.state
        async with self._engine.begin() as conn:
            await conn.execute(
                update(SupportCase)
                .where(SupportCase.id == state.case_id, SupportCase.version < state.version)  # type: ignore[arg-type]
                .values(
                    status=state.status.value,
                    sla_state=state.sla_state.value,
                    assignee_id=state.assignee_id,
                    queue=state.queue.value,
                    first_response_due_at=state.first_response_due_at,
                    next_response_due_at=state.next_response_due_at,
                    sla_due_at=state.due_at,
                    state=state.model_dump(mode="json"),
                    version=state.version,
                    updated_at=state.updated_at,
                )
            )
            if projection.new_messages:
                rows = [
                    {
                        "id": m.id,
                        "case_id": state.case_id,
                        "author_kind": m.author_kind,
                        "author_id": m.author_id,
                        "body": m.body,
                        "attachments": m.attachments,
                        "created_at": m.created_at,
                    }
                    for m in projection.new_messages
                ]
                await conn.execute(insert_new(self._engine, SupportCaseMessage, rows))
        if self._webhooks is not None:
            await self._webhooks.case_changed(state, projection.changes)

    @activity.defn
    async def send_case_mail(self, mail: CaseMail) -> None:
        text, html = self.render(mail)
        # One message to every recipient: a retry never sends the first ones a second copy.
        message_id = await self._mailer.send(", ".join(mail.to), subject_for(mail), text, html)
        log.info("case %s: %s e-mail sent as %s", mail.case_id, mail.kind, message_id)

    def render(self, mail: CaseMail) -> tuple[str, str]:
        context: dict[str, Any] = {
            "mail": mail,
            "due": mail.due_text or format_moment(mail.due_at),
            "closes": format_moment(mail.closes_at),
            "merchant_url": f"{self._api}/v1/support/cases/{mail.case_id}",
            "console_url": f"{self._api}/support/cases/{mail.case_id}",
        }
        return render_email(f"case_{mail.kind}", **context)
