"""What a customer contact's workflow exchanges with the API and its activities.

The API starts a contact with ``ContactInput`` and adds messages with ``MerchantReply`` (the
merchant, ``POST /v1/customer-contacts/{id}/messages``) and ``CustomerReply`` (the customer,
``POST /c/{token}``); the workflow sends ``ContactProjection`` to the read model and
``ContactMail`` to the mailer. Message ids are made by the API, so a retried projection writes
each message once; from the caller's Idempotency-Key (or the page form's nonce) when there is
one, so a retried request carries the same message (``contracts.updates``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from contracts.conversations import ConversationInput, task_summary
from domain.contacts import (
    NOTIFY_INTERVAL,
    ContactMessage,
    ContactRules,
    ContactState,
    Deadline,
)
from domain.stored import StoredModel


class ContactInput(ConversationInput[ContactState]):
    """Reminders and customer messages go to ``merchant_email``."""

    contact: ContactState  # as created (the API stored the same as the first projection)
    rules: ContactRules
    first_message_id: str
    first_body: str  # the merchant's first message, e-mailed to the customer
    customer_email: str  # the order's shipping e-mail: the merchant's messages
    order_reference_id: str
    # At most one e-mail to the merchant about customer messages this often
    # (PRINTFLOW_CONTACT_NOTIFY_INTERVAL).
    notify_interval: timedelta = NOTIFY_INTERVAL


def contact_task_summary(support_id: str, merchant_name: str, subject: str) -> str:
    return task_summary(f"Contact about {support_id} from {merchant_name}: {subject}")


class MerchantReply(StoredModel):
    message_id: str
    body: str


class CustomerReply(StoredModel):
    message_id: str
    body: str


class ContactProjection(StoredModel):
    """The contact as it now is, its new messages, the deadlines that changed, and what
    changed (``created``, ``merchant_message``, ``customer_message``, ``reminded``, ``missed``,
    ``closed``)."""

    state: ContactState
    new_messages: list[ContactMessage] = []
    deadlines: list[Deadline] = []
    changes: list[str] = []


ContactMailKind = Literal["merchant_message", "customer_message", "reply_reminder"]


class ContactMail(StoredModel):
    """``merchant_message``: to the customer, with the message and a ``/c/{token}`` link (the
    activity issues the token); the others to the merchant. A ``customer_message`` tells of
    ``messages`` new messages, ``body`` the latest when the workflow has it."""

    kind: ContactMailKind
    to: str
    contact_id: str
    support_id: str
    order_reference_id: str
    merchant_name: str
    subject: str
    body: str | None = None
    due_at: datetime | None = None
    due_text: str | None = None
    messages: int = 1
