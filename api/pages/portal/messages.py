"""Portal pages: customer messages, the shop's conversations with the customers of its orders
(docs/portal.md, docs/customer-contacts.md).

- ``GET /portal/messages``: the shop's contacts, newest first: the order, the reason, the state,
  the reply deadline and whether the customer is waiting for the shop; cursor pages.
- ``GET /portal/messages/{contact_id}``: the thread and the reply form;
  ``POST .../reply`` is ``POST /v1/customer-contacts/{id}/messages``: the same service, the same
  workflow Update (the form's nonce its id), the same policy and its refusals in words.

A conversation starts from an order's page ("write to the customer"), where the contact policy
says which reasons fit the order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ApiError, NotFound
from api.pages.portal import common
from api.services import contacts, orders
from api.services.portal import Visitor
from db.models import CustomerContact
from domain.contact_policy import ContactReason
from domain.contacts import CLOSE_AFTER, MAX_BODY, ContactMessageCreate, ContactStatus
from domain.portal import Right
from domain.sla import ReplySla

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 20

REASON_WORDS = {
    ContactReason.INVALID_ADDRESS: "Address problem",
    ContactReason.DELIVERY_DELAY: "Delivery delay",
    ContactReason.RETURNED_TO_SENDER: "Returned to sender",
    ContactReason.INVENTORY_CANCELLATION: "Canceled: out of stock",
}
STATUS_WORDS = {ContactStatus.OPEN: "Open", ContactStatus.CLOSED: "Closed"}
# The shop's reply clock, in words, and the badge colour that goes with it.
REPLY_WORDS = {
    ReplySla.NONE: ("Nothing owed", "paused"),
    ReplySla.ON_TRACK: ("Reply due", "on_track"),
    ReplySla.AT_RISK: ("Reply due soon", "at_risk"),
    ReplySla.MET: ("Answered in time", "met"),
    ReplySla.MISSED: ("Reply late", "breached"),
}
DONE = {
    "replied": "Your reply was sent to the customer.",
    # After the first message, written from the order's page (``order_problems``).
    "sent": "Your message was e-mailed to the customer, who answers on their own page. Their "
    "answers appear here.",
}


# ---------------------------------------------------------------------------- the list


@router.get("/messages", response_class=HTMLResponse)
async def messages_page(request: Request, db: SessionDep) -> Response:
    visitor = await common.enter(request, db, Right.MESSAGES)
    if isinstance(visitor, Response):
        return visitor
    cursor = request.query_params.get("cursor") or None
    try:
        found = await contacts.list_contacts(
            db, visitor.merchant, support_id=None, status=None, limit=PAGE_SIZE, cursor=cursor
        )
    except ApiError as err:  # a cursor the portal did not make
        return common.bad_cursor(
            request,
            visitor,
            err,
            ("/portal/messages", "Back to the first page of customer messages"),
        )
    references = await common.references(db, visitor, [c.order_id for c in found.data])
    rows = [
        {
            "id": c.id,
            "subject": c.subject,
            "order_id": c.order_id,
            "order": references.get(c.order_id) or c.support_id,
            "support_id": c.support_id,
            "reason": _reason(c.reason),
            "status": STATUS_WORDS[c.status],
            "reply": _reply(c.sla_state),
            "deadline": _deadline(visitor, c.status, c.sla_state, c.reply_due_at),
            "waiting": _waiting(c.status, c.reply_due_at),
            "updated": common.at(visitor, c.updated_at),
        }
        for c in found.data
    ]
    context = {
        "rows": rows,
        "next_url": f"/portal/messages?cursor={found.next_cursor}" if found.next_cursor else None,
        "paged": cursor is not None,
        "waiting_count": sum(1 for r in rows if r["waiting"]),
    }
    return common.page(request, visitor, "portal/messages.html", context)


def _reason(reason: str) -> str:
    try:
        return REASON_WORDS[ContactReason(reason)]
    except ValueError:
        return reason.replace("_", " ").capitalize()


def _reply(state: ReplySla) -> dict[str, str]:
    word, badge = REPLY_WORDS[state]
    return {"word": word, "badge": badge}


def _waiting(status: ContactStatus, reply_due_at: datetime | None) -> bool:
    """The customer wrote last and waits for the shop: a reply clock runs."""
    return status is ContactStatus.OPEN and reply_due_at is not None


def _deadline(
    visitor: Visitor, status: ContactStatus, sla: ReplySla, due: datetime | None
) -> dict[str, object]:
    """What the contact's deadline is, in words, with the time (in the shop's zone) if any."""
    at = common.at(visitor, due)
    if status is ContactStatus.CLOSED:
        return {"words": "None: the conversation is closed", "at": None}
    if at is None:
        return {"words": "None: you had the last word", "at": None}
    if sla is ReplySla.MISSED:
        return {"words": "Your reply was due", "at": at}
    return {"words": "Reply by", "at": at}


# ---------------------------------------------------------------------------- one thread


@router.get("/messages/{contact_id}", response_class=HTMLResponse)
async def thread_page(request: Request, contact_id: str, db: SessionDep) -> Response:
    entered = await common.enter_about(
        request, db, Right.MESSAGES, "Customer message", _finder(db, contact_id)
    )
    if isinstance(entered, Response):
        return entered
    visitor, row = entered
    return await _thread(request, db, visitor, row, 200, notice=common.notice(request, DONE))


def _finder(db: AsyncSession, contact_id: str) -> Callable[[Visitor], Awaitable[CustomerContact]]:
    """How ``common.enter_about`` reads the conversation ``contact_id`` of the visitor's shop."""
    return lambda visitor: contacts.contact_row(db, contact_id, visitor.merchant)


async def _thread(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    row: CustomerContact,
    status_code: int,
    *,
    notice: str | None = None,
    problem: str | None = None,
    body: str = "",
    nonce: str | None = None,
    invalid: bool = False,
) -> Response:
    contact = await contacts.render(db, row)
    try:
        order = await orders.get_row(db, visitor.merchant, contact.order_id)
        reference = order.order_reference_id
    except NotFound:
        reference = ""
    context = {
        "contact": contact,
        "reference": reference,
        "reason": _reason(contact.reason),
        "status": STATUS_WORDS[contact.status],
        "open": contact.status is ContactStatus.OPEN,
        "reply": _reply(contact.sla_state),
        "deadline": _deadline(visitor, contact.status, contact.sla_state, contact.reply_due_at),
        "waiting": _waiting(contact.status, contact.reply_due_at),
        "closes": common.at(visitor, contact.closes_at),
        "started": common.at(visitor, contact.created_at),
        "messages": common.thread(visitor, contact.messages, lambda _: "The customer"),
        "notice": notice,
        "problem": problem,
        "body": body,
        "invalid": invalid,
        "max_body": MAX_BODY,
        "close_days": CLOSE_AFTER.days,
        "form_nonce": nonce or common.new_nonce(),
    }
    return common.page(request, visitor, "portal/message_thread.html", context, status_code)


@router.post("/messages/{contact_id}/reply", response_class=HTMLResponse)
async def reply(
    request: Request,
    contact_id: str,
    db: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> Response:
    entered = await common.enter_form_about(
        request, db, Right.MESSAGES, "Customer message", _finder(db, contact_id)
    )
    if isinstance(entered, Response):
        return entered
    visitor, form, row = entered
    body = common.text(form, "body") or ""
    nonce = common.nonce_of(form)

    async def run() -> Response:
        try:
            message = ContactMessageCreate(body=body)
        except ValidationError as err:
            raise common.Invalid("body", _first_error(err)) from None
        await contacts.merchant_reply(
            db, temporal, settings, row, message.body, common.update_key(nonce)
        )
        return common.done(f"/portal/messages/{contact_id}", "replied")

    failed = await common.attempt(
        db,
        visitor,
        f"reply to contact {contact_id}",
        run,
        unanswered=common.no_answer("The conversation"),
        reload=(row,),
    )
    if isinstance(failed, Response):
        return failed
    return await _thread(
        request,
        db,
        visitor,
        row,
        failed.status,
        problem=failed.problem,
        body=body,
        nonce=failed.nonce(nonce),
        invalid=failed.status == 422,
    )


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    if first.get("type") in ("missing", "string_too_short"):
        return "Write a reply before sending it."
    if first.get("type") == "string_too_long":
        return f"Your reply: at most {MAX_BODY:,} characters.".replace(",", " ")
    return common.sentence(f"Your reply: {common.error_words(first)}")
