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

import secrets
from typing import Any

from sqlalchemy import update
from temporalio import activity

from activities.conversations import ConversationActivities
from activities.read_model import insert_once, write_newer
from contracts.contacts import ContactMail, ContactProjection
from db.engine import utcnow
from db.models import (
    CustomerContact,
    CustomerContactDeadline,
    CustomerContactLink,
    CustomerContactMessage,
)
from domain.personalization import hash_token

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


class CustomerContactActivities(
    ConversationActivities, what="contact", logger="printflow.contacts"
):
    @activity.defn
    async def project_contact(self, projection: ContactProjection) -> None:
        state = projection.state
        columns = {
            "status": state.status.value,
            "sla_state": state.sla_state.value,
            "reply_due_at": state.reply_due_at,
        }
        messages = [
            {**m.model_dump(), "contact_id": state.contact_id} for m in projection.new_messages
        ]
        deadlines = [d.model_dump() for d in projection.deadlines]
        async with self._engine.begin() as conn:
            newest = await write_newer(conn, CustomerContact, state.contact_id, state, **columns)
            await insert_once(conn, CustomerContactMessage, messages, replace=newest)
            await insert_once(conn, CustomerContactDeadline, deadlines, replace=newest)
            if newest:  # not an older projection arriving late
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
            context["contact_url"] = f"{self._api}/v1/customer-contacts/{mail.contact_id}"
        await self._mail(mail.contact_id, mail.kind, mail.to, subject_for(mail), context)

    async def _issue_link(self, contact_id: str) -> str:
        token = secrets.token_urlsafe(32)
        link = {"token_hash": hash_token(token), "contact_id": contact_id, "created_at": utcnow()}
        async with self._engine.begin() as conn:
            await insert_once(conn, CustomerContactLink, [link])
        return f"{self._api}/c/{token}"
