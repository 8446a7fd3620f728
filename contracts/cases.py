"""What a support case's workflow exchanges with the API and its activities, in one place.

The API starts a case with ``CaseInput`` and changes it with the Updates' arguments
(``MerchantMessage``, ``AgentReply``, ``Assignment``, ``Resolution``, ``Closing``); the workflow
sends ``CaseProjection`` to the read model and ``CaseMail`` to the mailer. Message ids are made
by the API, so a retried projection writes each message once; from the caller's
Idempotency-Key when there is one, so a retried request carries the same message
(``contracts.updates``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from contracts.conversations import ConversationInput, task_summary
from domain.cases import CaseMessage, CaseRules, CaseState
from domain.stored import StoredModel
from domain.support import Plan


class CaseInput(ConversationInput[CaseState]):
    """Agent replies and reminders go to ``merchant_email``."""

    case: CaseState  # as created (the API stored the same as the first projection)
    rules: CaseRules
    plan: Plan
    csm_email: str | None = None  # premium merchants' CSM hears of breaches


def case_task_summary(number: int, merchant_name: str, subject: str) -> str:
    return task_summary(f"Case #{number} of {merchant_name}: {subject}")


# ---------------------------------------------------------------------------- from the API


class MerchantMessage(StoredModel):
    message_id: str
    body: str
    attachments: list[str] = []


class AgentReply(StoredModel):
    message_id: str
    agent_id: str
    agent_name: str
    body: str
    waiting_on_merchant: bool = False


class Assignment(StoredModel):
    agent_id: str
    by_agent_id: str


class Resolution(StoredModel):
    agent_id: str


class Closing(StoredModel):
    """The merchant closes their case."""

    reason: str = "closed by the merchant"


# ---------------------------------------------------------------------------- to activities


class CaseProjection(StoredModel):
    """The case as it now is, the messages new since the last projection, and what changed
    (``created``, ``merchant_message``, ``agent_reply``, ``at_risk``, ``breached`` …)."""

    state: CaseState
    new_messages: list[CaseMessage] = []
    changes: list[str] = []


CaseMailKind = Literal["agent_reply", "at_risk", "breached", "waiting_reminder"]


class CaseMail(StoredModel):
    kind: CaseMailKind
    to: list[str]
    case_id: str
    number: int
    subject: str
    merchant_name: str
    category: str
    priority: str
    due_at: datetime | None = None
    due_text: str | None = None  # the deadline as the support team reads it
    body: str | None = None  # an agent's reply
    agent_name: str | None = None
    closes_at: datetime | None = None  # a waiting case closes then without an answer
