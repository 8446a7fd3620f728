"""Support cases: the read model (``support_cases``, ``support_case_messages``), the
``support_case.updated`` webhook, and the e-mails a case sends.

The projection is idempotent and ordered by the state's ``version``: a retried or late one never
overwrites a newer row, and each message is written once (its id comes from the API, or from
the workflow for the case's own notes). The webhook is stored and queued after the transaction,
so a receiver only hears of what the API already shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import activity

from activities.conversations import ConversationActivities
from activities.read_model import insert_once, write_newer
from contracts.cases import CaseMail, CaseProjection
from db.models import SupportCase, SupportCaseMessage
from domain.cases import CaseState

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


def _columns(state: CaseState) -> dict[str, Any]:
    """The row's columns besides its state, for the API's queries and the console's queues."""
    return {
        "status": state.status.value,
        "sla_state": state.sla_state.value,
        "assignee_id": state.assignee_id,
        "queue": state.queue.value,
        "first_response_due_at": state.first_response_due_at,
        "next_response_due_at": state.next_response_due_at,
        "sla_due_at": state.due_at,
    }


class SupportCaseActivities(ConversationActivities, what="case", logger="printflow.support"):
    @activity.defn
    async def project_case(self, projection: CaseProjection) -> None:
        state = projection.state
        messages = [{**m.model_dump(), "case_id": state.case_id} for m in projection.new_messages]
        async with self._engine.begin() as conn:
            wrote = await write_newer(conn, SupportCase, state.case_id, state, **_columns(state))
            await insert_once(conn, SupportCaseMessage, messages, replace=wrote)
        if self._webhooks is not None:
            await self._webhooks.case_changed(state, projection.changes)

    @activity.defn
    async def send_case_mail(self, mail: CaseMail) -> None:
        # One message to every recipient: a retry never sends the first ones a second copy.
        await self._mail(
            mail.case_id, mail.kind, ", ".join(mail.to), subject_for(mail), self._context(mail)
        )

    def _context(self, mail: CaseMail) -> dict[str, Any]:
        return {
            "mail": mail,
            "due": mail.due_text or format_moment(mail.due_at),
            "closes": format_moment(mail.closes_at),
            "merchant_url": f"{self._api}/v1/support/cases/{mail.case_id}",
            "console_url": f"{self._api}/support/cases/{mail.case_id}",
        }
