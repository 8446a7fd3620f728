"""What the customer contact endpoints do: create (never waiting for Temporal), reads from the
read model, messages as Updates of the contact's workflow, and the customer's side behind a
``/c/{token}`` link.

Create applies the contact policy (``domain.contact_policy.check_contact``) to the order the Support
ID names (another merchant's order, or none, is a 404); its refusals keep their code, status
and details. The contact, its first message and the start of its workflow commit in one
transaction; the relay (``api.relay``) starts the workflow, which e-mails the customer. The
contact keeps the request's Idempotency-Key (hashed with the merchant's key): a create that
runs again answers the contact the first run made, and the customer gets one e-mail.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ApiError, Conflict, Gone, NotFound
from api.pagination import newest_first
from api.relay import ContactStarter, start_operation
from api.schemas import (
    ContactMessagePublic,
    ContactPage,
    ContactPublic,
)
from api.services.updates import applied, run_update, update_id
from contracts.contacts import (
    ContactInput,
    CustomerReply,
    MerchantReply,
    contact_task_summary,
)
from contracts.updates import message_id
from db.engine import utcnow
from db.models import (
    CustomerContact,
    CustomerContactLink,
    CustomerContactMessage,
    CustomerContactStart,
    Merchant,
    Order,
)
from domain.contact_policy import ContactRefused, OrderFacts, check_contact
from domain.contacts import (
    ContactCreate,
    ContactRefusal,
    ContactState,
    ContactStatus,
    check_reply,
    contact_rules,
    contact_summary,
    new_contact_state,
)
from domain.orders import OrderState
from domain.personalization import hash_token
from domain.support import SupportConfig
from domain.support_ids import normalize_support_id
from runtime.settings import Settings
from workflows.contacts import CustomerContactWorkflow

# secrets.token_urlsafe(32) gives 43 characters; anything far off is refused before a query.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,128}")

LINK_NOT_FOUND = "link_not_found"
CONTACT_CLOSED = ContactRefusal.CONTACT_CLOSED.value
TOO_MANY_MESSAGES = ContactRefusal.TOO_MANY_MESSAGES.value


def _message_id() -> str:
    return message_id("", None)


class TooManyMessages(ApiError):
    """The customer wrote ``CUSTOMER_MESSAGES_PER_HOUR`` messages in the last hour."""

    status_code = 429
    code = TOO_MANY_MESSAGES


def _refused(code: str, message: str, details: object) -> ApiError:
    if code == TOO_MANY_MESSAGES:
        return TooManyMessages(message)
    return Conflict(message, code=code)


class Refused(ApiError):
    """A refusal of the contact policy, with its own status."""

    def __init__(self, refused: ContactRefused) -> None:
        super().__init__(refused.message, code=refused.code, details=refused.details)
        self.status_code = refused.status


# ---------------------------------------------------------------------------- create


async def create_contact(
    session: AsyncSession,
    starter: ContactStarter,
    settings: Settings,
    support: SupportConfig,
    merchant: Merchant,
    body: ContactCreate,
    idempotency_ref: str | None = None,
) -> ContactPublic:
    made = await _made_by(session, merchant, idempotency_ref)
    if made is not None:
        return made
    order = (
        await session.exec(
            select(Order).where(
                Order.support_id == body.support_id, Order.merchant_id == merchant.id
            )
        )
    ).first()
    if order is None:
        raise NotFound(
            f"support_id: no order with Support ID {body.support_id} of yours",
            code="order_not_found",
        )
    state = OrderState.model_validate(order.state)
    try:
        reason = check_contact(body.reason, OrderFacts.of(state), body.subject, body.body)
    except ContactRefused as refused:
        raise Refused(refused) from None

    created_at = utcnow()
    contact_id = "con_" + uuid.uuid4().hex
    contact = new_contact_state(
        contact_id=contact_id,
        merchant_id=merchant.id,
        order_id=order.id,
        support_id=order.support_id,
        reason=reason.value,
        subject=body.subject,
        created_at=created_at,
    )
    rules = contact_rules(support, merchant.timezone, merchant.country, created_at.date())
    message = CustomerContactMessage(
        id=_message_id(),
        contact_id=contact_id,
        author_kind="merchant",
        body=body.body,
        created_at=created_at,
    )
    inp = ContactInput(
        contact=contact,
        rules=rules,
        first_message_id=message.id,
        first_body=body.body,
        merchant_name=merchant.name,
        merchant_email=merchant.support_email,
        customer_email=str(state.shipping_address.email),
        order_reference_id=state.order_reference_id,
        notify_interval=settings.contact_notify_interval,
    )
    row = CustomerContact(
        id=contact_id,
        merchant_id=merchant.id,
        order_id=order.id,
        support_id=order.support_id,
        reason=contact.reason,
        subject=contact.subject,
        status=contact.status.value,
        sla_state=contact.sla_state.value,
        reply_due_at=None,
        state=contact.model_dump(mode="json"),
        workflow_input=inp.model_dump(mode="json"),
        version=contact.version,
        created_at=created_at,
        updated_at=created_at,
        idempotency_ref=idempotency_ref,
    )
    session.expunge(merchant)  # a lost race rolls back; the merchant must stay loaded
    session.add(row)
    try:
        await session.flush()  # the contact first: the message and the start refer to it
        session.add(message)
        session.add(
            CustomerContactStart(
                contact_id=contact_id,
                due_at=created_at + settings.start_sweep_after,
                static_summary=contact_task_summary(order.support_id, merchant.name, body.subject),
            )
        )
        await session.commit()
    except IntegrityError:
        await session.rollback()
        made = await _made_by(session, merchant, idempotency_ref)
        if made is None:
            raise
        return made  # a run of the same request made it meanwhile
    starter.start_soon(contact_id)
    return _public(contact, row.merchant_id, [message])


async def _made_by(
    session: AsyncSession, merchant: Merchant, idempotency_ref: str | None
) -> ContactPublic | None:
    """The merchant's contact an earlier run of this request made, if any: answered as it is,
    and the customer is not written to again."""
    if idempotency_ref is None:
        return None
    found = await session.exec(
        select(CustomerContact).where(
            CustomerContact.idempotency_ref == idempotency_ref,
            CustomerContact.merchant_id == merchant.id,
        )
    )
    row = found.first()
    if row is None:
        return None
    state = ContactState.model_validate(row.state)
    return _public(state, row.merchant_id, await thread(session, row.id))


# ---------------------------------------------------------------------------- reads


async def contact_row(
    session: AsyncSession, contact_id: str, merchant: Merchant
) -> CustomerContact:
    """The merchant's own contact (another merchant's is a 404, never a 403)."""
    row = await session.get(CustomerContact, contact_id)
    if row is None or row.merchant_id != merchant.id:
        raise NotFound(f"no customer contact {contact_id}", code="contact_not_found")
    return row


async def thread(session: AsyncSession, contact_id: str) -> list[CustomerContactMessage]:
    return list(
        await session.exec(
            select(CustomerContactMessage)
            .where(CustomerContactMessage.contact_id == contact_id)
            .order_by(col(CustomerContactMessage.created_at), col(CustomerContactMessage.id))
        )
    )


async def render(session: AsyncSession, row: CustomerContact) -> ContactPublic:
    state = ContactState.model_validate(row.state)
    return _public(state, row.merchant_id, await thread(session, row.id))


def _public(
    state: ContactState, merchant_id: str, messages: list[CustomerContactMessage]
) -> ContactPublic:
    return ContactPublic(
        **contact_summary(state).model_dump(),
        merchant_id=merchant_id,
        messages=[
            ContactMessagePublic(
                id=m.id,
                author_kind=m.author_kind,  # type: ignore[arg-type]
                body=m.body,
                created_at=m.created_at,
            )
            for m in messages
        ],
    )


async def list_contacts(
    session: AsyncSession,
    merchant: Merchant,
    *,
    support_id: str | None,
    status: ContactStatus | None,
    limit: int,
    cursor: str | None,
) -> ContactPage:
    query = select(CustomerContact).where(CustomerContact.merchant_id == merchant.id)
    if support_id is not None:
        query = query.where(CustomerContact.support_id == normalize_support_id(support_id))
    if status is not None:
        query = query.where(CustomerContact.status == status.value)
    page, next_cursor = await newest_first(
        session, query, CustomerContact, limit=limit, cursor=cursor
    )
    return ContactPage(
        data=[contact_summary(ContactState.model_validate(r.state)) for r in page],
        next_cursor=next_cursor,
    )


# ---------------------------------------------------------------------------- messages


async def _update(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: CustomerContact,
    update: object,
    arg: object,
    idempotency_key: str | None,
) -> CustomerContact:
    """Runs an Update of the contact's workflow: a refusal is a 409 with its code, a 429 for
    a customer over the hourly limit."""
    start = await start_operation(session, settings, row)
    await session.commit()  # no database connection is held while the workflow answers

    async def closed() -> ApiError | None:
        await session.refresh(row)
        if applied(ContactState.model_validate(row.state), update, idempotency_key):
            return None  # a retry of an Update made before it closed: the contact as it is
        return Conflict("the contact is closed", code=CONTACT_CLOSED)

    await run_update(
        client,
        row.id,
        update,  # type: ignore[arg-type]
        arg,
        patience=settings.update_timeout,
        on_closed=closed,
        on_refusal=_refused,
        idempotency_key=idempotency_key,
        start=start,
        what="contact",
    )
    # The Update answered after its projection: the read model shows the change.
    await session.refresh(row)
    return row


async def merchant_reply(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: CustomerContact,
    body: str,
    idempotency_key: str | None,
) -> ContactPublic:
    try:
        check_reply(body)
    except ContactRefused as refused:
        raise Refused(refused) from None
    # From the key: a retry carries the same message (contracts.updates).
    uid = update_id(CustomerContactWorkflow.merchant_reply, idempotency_key)
    reply = MerchantReply(message_id=message_id(row.id, uid), body=body)
    row = await _update(
        session,
        client,
        settings,
        row,
        CustomerContactWorkflow.merchant_reply,
        reply,
        idempotency_key,
    )
    return await render(session, row)


# ---------------------------------------------------------------------------- the customer


@dataclass
class CustomerView:
    row: CustomerContact
    state: ContactState
    shop_name: str
    order_reference_id: str
    messages: list[CustomerContactMessage]


async def open_link(session: AsyncSession, token: str) -> CustomerView:
    """The contact behind ``token``: 404 ``link_not_found``, 410 ``contact_closed`` once the
    conversation has closed (30 days after its last message)."""
    link = None
    if _TOKEN_SHAPE.fullmatch(token):
        link = await session.get(CustomerContactLink, hash_token(token))
    if link is None:
        raise NotFound("no such conversation link", code=LINK_NOT_FOUND)
    row = await session.get(CustomerContact, link.contact_id)
    assert row is not None  # a link refers to its contact (foreign key)
    state = ContactState.model_validate(row.state)
    merchant = await session.get(Merchant, row.merchant_id)
    inp = ContactInput.model_validate(row.workflow_input)
    if state.status is ContactStatus.CLOSED:
        raise Gone(
            "this conversation is closed",
            code=CONTACT_CLOSED,
            details={"shop": merchant.name if merchant else inp.merchant_name},
        )
    return CustomerView(
        row=row,
        state=state,
        shop_name=merchant.name if merchant else inp.merchant_name,
        order_reference_id=inp.order_reference_id,
        messages=await thread(session, row.id),
    )


async def customer_reply(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    view: CustomerView,
    body: str,
    idempotency_key: str | None = None,
) -> CustomerView:
    """The customer's reply; ``idempotency_key`` (the page form's nonce) is the Update's id, so
    the same form sent again adds the reply once."""
    uid = update_id(CustomerContactWorkflow.customer_message, idempotency_key)
    reply = CustomerReply(message_id=message_id(view.row.id, uid), body=body)
    row = await _update(
        session,
        client,
        settings,
        view.row,
        CustomerContactWorkflow.customer_message,
        reply,
        idempotency_key,
    )
    view.row, view.state = row, ContactState.model_validate(row.state)
    view.messages = await thread(session, row.id)
    return view
