"""Customer contacts: the read model (``customer_contacts``, their messages and the merchants'
reply deadlines), the ``customer_contact.message_received`` webhook, and the e-mails.

The projection is idempotent and ordered by the state's ``version``: a retried or late one never
overwrites a newer row, and each message is written once (its id comes from the API). The
webhook is stored and queued after the transaction.

The e-mail to the customer (``merchant_message``) carries a fresh ``/c/{token}`` link: 256
random bits, of which only the SHA-256 is stored (``customer_contact_links``), as for
personalization links. Every link of a contact works while the contact is open.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.mail import Mailer, render_email
from contracts.contacts import ContactMail, ContactProjection
from db.engine import insert_new
from db.models import (
    CustomerContact,
    CustomerContactDeadline,
    CustomerContactLink,
    CustomerContactMessage,
)
from domain.personalization import hash_token

if TYPE_CHECKING:
    from activities.webhooks.emitter import WebhookEmitter

log = logging.getLogger("printflow.contacts")

SUBJECTS = {
    "merchant_message": "{subject} – your order {reference} at {merchant}",
    "customer_message": "Your customer wrote: {subject} ({support_id})",
    "reply_reminder": "Reminder: reply to your customer by {due} ({support_id})",
}


def subject_for(mail: ContactMail) -> str:
    return SUBJECTS[mail.kind].format(
        subject=mail.subject,
        reference=mail.order_reference_id,
        merchant=mail.merchant_name,
        support_id=mail.support_id,
        due=mail.due_text or "",
    )


class CustomerContactActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        mailer: Mailer,
        public_base_url: str,
        webhooks: WebhookEmitter | None = None,
    ) -> None:
        self._engine = engine
        self._mailer = mailer
        self._base = public_base_url.rstrip("/")
        self._webhooks = webhooks

    @activity.defn
    async def project_contact(self, projection: ContactProjection) -> None:
        state = projection.state
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(CustomerContact)
                .where(
                    CustomerContact.id == state.contact_id,  # type: ignore[arg-type]
                    CustomerContact.version < state.version,  # type: ignore[arg-type]
                )
                .values(
                    status=state.status.value,
                    sla_state=state.sla_state.value,
                    reply_due_at=state.reply_due_at,
                    state=state.model_dump(mode="json"),
                    version=state.version,
                    updated_at=state.updated_at,
                )
            )
            if projection.new_messages:
                rows = [
                    {
                        "id": m.id,
                        "contact_id": state.contact_id,
                        "author_kind": m.author_kind,
                        "body": m.body,
                        "created_at": m.created_at,
                    }
                    for m in projection.new_messages
                ]
                await conn.execute(insert_new(self._engine, CustomerContactMessage, rows))
            if projection.deadlines:
                deadlines = [d.model_dump() for d in projection.deadlines]
                await conn.execute(insert_new(self._engine, CustomerContactDeadline, deadlines))
                if result.rowcount:  # not an older projection arriving late
                    for d in projection.deadlines:
                        if d.outcome is not None:
                            await conn.execute(
                                update(CustomerContactDeadline)
                                .where(CustomerContactDeadline.id == d.id)  # type: ignore[arg-type]
                                .values(outcome=d.outcome, answered_at=d.answered_at)
                            )
        if self._webhooks is not None:
            customer = [m for m in projection.new_messages if m.author_kind == "customer"]
            await self._webhooks.contact_message_received(state, customer)

    @activity.defn
    async def send_contact_mail(self, mail: ContactMail) -> None:
        context: dict[str, Any] = {"mail": mail}
        if mail.kind == "merchant_message":
            context["link"] = await self._issue_link(mail.contact_id)
        else:
            context["contact_url"] = f"{self._base}/v1/customer-contacts/{mail.contact_id}"
        text, html = render_email(f"contact_{mail.kind}", **context)
        message_id = await self._mailer.send(mail.to, subject_for(mail), text, html)
        log.info("contact %s: %s e-mail sent as %s", mail.contact_id, mail.kind, message_id)

    async def _issue_link(self, contact_id: str) -> str:
        token = secrets.token_urlsafe(32)
        async with self._engine.begin() as conn:
            await conn.execute(
                insert_new(
                    self._engine,
                    CustomerContactLink,
                    [
                        {
                            "token_hash": hash_token(token),
                            "contact_id": contact_id,
                            "created_at": datetime.now(UTC),
                        }
                    ],
                )
            )
        return f"{self._base}/c/{token}"
