"""``/c/{token}``: the conversation a customer opens from the e-mail about their order.

As the personalization pages (``api.pages.personalization``): plain HTML, no JavaScript,
nothing loaded from anywhere else, the same Content-Security-Policy with a nonce, no-store and
no Referer. The
link is the customer's capability (256 random bits, stored hashed), so the form needs no CSRF
token; the reply is checked like every text (length, no control characters but line breaks and
tab). The page shows the thread and what the customer already knows about the order (its
reference and Support ID, the shop's name), never the address or other personal data.

Links work while the contact is open: it closes 30 days after its last message, after which
every link of it shows a 410 page.

The reply form carries a nonce, new with each page shown; it is the Update's id, so a reply
sent twice (a double click, a resend after "We could not send your message just now") is
added once. The page shown after such a failure keeps the nonce of the form that failed.

A customer writes at most ``CUSTOMER_MESSAGES_PER_HOUR`` messages an hour per contact (the
contact's workflow counts them): one more is shown the page again with a 429 and a problem
saying so, and changes nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.pages.personalization import _message, _page
from api.services import contacts
from domain.contacts import CUSTOMER_MESSAGES_PER_HOUR, MAX_BODY, ContactMessageCreate

log = logging.getLogger("printflow.pages")

router = APIRouter(include_in_schema=False)
_TOO_MANY = (
    f"You have sent {CUSTOMER_MESSAGES_PER_HOUR} messages in the last hour; the shop has them "
    "all. Please wait a little before you write again."
)
# A form's nonce (secrets.token_urlsafe(16) makes 22 characters).
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


@router.get("/c/{token}", response_class=HTMLResponse)
async def conversation(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    try:
        view = await contacts.open_link(session, token)
    except ApiError as err:
        return _refusal(request, err)
    return _thread(request, view, status_code=200)


@router.post("/c/{token}", response_class=HTMLResponse)
async def reply(
    request: Request,
    token: str,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> HTMLResponse:
    try:
        view = await contacts.open_link(session, token)
    except ApiError as err:
        return _refusal(request, err)
    form = await request.form()
    raw = form.get("body")
    value = raw if isinstance(raw, str) else ""
    sent_nonce = form.get("nonce")
    nonce = sent_nonce if isinstance(sent_nonce, str) and _NONCE.fullmatch(sent_nonce) else None
    try:
        body = ContactMessageCreate(body=value).body
    except ValidationError as err:
        return _thread(request, view, status_code=422, value=value, error=_say(err), nonce=nonce)
    problem = "We could not send your message just now. Please send it again."
    key = f"customer-{nonce}" if nonce else None  # the Update's id: one reply per form sent
    try:
        view = await contacts.customer_reply(session, temporal, settings, view, body, key)
    except ApiError as err:
        if err.status_code == 503:
            return _thread(
                request, view, status_code=503, value=value, problem=problem, nonce=nonce
            )
        if err.code == contacts.TOO_MANY_MESSAGES:
            return _thread(
                request, view, status_code=429, value=value, problem=_TOO_MANY, nonce=nonce
            )
        return _refusal(request, err)
    except Exception:
        log.exception("customer reply to contact %s failed", view.row.id)
        return _thread(request, view, status_code=503, value=value, problem=problem, nonce=nonce)
    return _thread(request, view, status_code=200, sent=True)


def _say(err: ValidationError) -> str:
    first = err.errors()[0]
    kind = first.get("type", "")
    if kind == "string_too_short":
        return "Please write a message."
    if kind == "string_too_long":
        return f"Please keep your message under {MAX_BODY} characters."
    return "Your message contains characters that cannot be sent; please remove them."


def _thread(
    request: Request,
    view: contacts.CustomerView,
    *,
    status_code: int,
    value: str = "",
    error: str | None = None,
    problem: str | None = None,
    sent: bool = False,
    nonce: str | None = None,
) -> HTMLResponse:
    problems: list[dict[str, Any]] = []
    if problem:
        problems.append({"anchor": None, "text": problem})
    if error:
        problems.append({"anchor": "body", "text": error})
    context = {
        "shop": view.shop_name,
        "subject": view.state.subject,
        "reference": view.order_reference_id,
        "support_id": view.state.support_id,
        "messages": [m for m in view.messages if m.author_kind in ("merchant", "customer")],
        "max_length": MAX_BODY,
        "value": value,
        "error": error,
        "problems": problems,
        "sent": sent,
        "form_nonce": nonce or secrets.token_urlsafe(16),
    }
    return _page(request, "contact.html", context, status_code)


def _refusal(request: Request, err: ApiError) -> HTMLResponse:
    if err.code == contacts.CONTACT_CLOSED:
        about: dict[str, Any] = err.details if isinstance(err.details, dict) else {}
        shop = about.get("shop") or "the shop"
        return _message(
            request,
            410,
            "bad",
            "This conversation is closed",
            [
                "Conversation links work until 30 days after the last message.",
                f"If you still need help with your order, please contact {shop} directly.",
            ],
        )
    return _message(
        request,
        404,
        "bad",
        "Link not found",
        [
            "There is no conversation like this one. Please check that you opened or copied "
            "the whole link from the message you received."
        ],
    )
