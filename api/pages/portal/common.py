"""What the pages of the merchant portal share: who is signed in, what their role lets them
do, the form checks (CSRF token, nonce), the page, 403 and 404 answers, how a form's change
runs and what is said when it does not go through.

A page calls ``enter(request, db, right)`` and a form ``enter_form(request, db, right)``; each
returns the ``Visitor`` or the answer to send instead: the sign-in page for a stranger, the 403
page for a role without ``right``, a 403 for a form without this session's CSRF token. Another
merchant's anything is looked up within the visitor's merchant and so is a 404, never a 403.

Every form that changes something carries a nonce, new with each page shown; the portal passes
``portal-{nonce}`` as the idempotency key (an Update's id) or the creation's reference to the
same service the API calls, so a double submit, or a resend after "the change may not have been
made", changes things once. A change runs through ``attempt``: when it does not go through, the
page is shown again saying why (``Invalid`` for the form's own checks, the API's refusal in
words, or that no answer came), and only after a 5xx with the nonce of that form.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from api.errors import ApiError
from api.idempotency import reference
from api.pages import html
from api.pages.html import render, secure, when
from api.schemas import CaseMessagePublic, ContactMessagePublic
from api.services import portal
from api.services.portal import Visitor
from api.services.sessions import Signer
from db.engine import utcnow
from db.models import Order
from domain.portal import RIGHT_WORDS, Right, may

log = logging.getLogger("printflow.portal")

templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

COOKIE = "pf_portal"
LOGIN_PATH = "/portal/login"
# Where a sign-in may send the visitor on: portal pages only, never another site.
_NEXT = re.compile(r"^/portal(/[A-Za-z0-9_-]{1,60}){0,3}$")
# A form's nonce (secrets.token_urlsafe(16) makes 22 characters).
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Section:
    href: str
    label: str
    right: Right


# The navigation, in order; each section shown only to a role with its right.
SECTIONS = (
    Section("/portal/orders", "Orders", Right.ORDERS_READ),
    Section("/portal/needs-you", "Needs you", Right.ORDERS_READ),
    Section("/portal/tickets", "Tickets", Right.TICKETS),
    Section("/portal/messages", "Customer messages", Right.MESSAGES),
    Section("/portal/developers", "Developers", Right.DEVELOPERS),
    Section("/portal/team", "Team", Right.TEAM),
)


def signer(request: Request) -> Signer:
    """The portal's signer: its key derived from ``SESSION_SECRET`` (so a console cookie is
    never a portal one)."""
    return html.signer(
        request,
        "portal_signer",
        lambda secret: hmac.new(secret, b"printflow portal sessions", hashlib.sha256).digest(),
    )


# ---------------------------------------------------------------------------- entering


async def current(request: Request, db: AsyncSession) -> Visitor | None:
    return await portal.visitor(db, signer(request), request.cookies.get(COOKIE), utcnow())


async def enter(request: Request, db: AsyncSession, right: Right) -> Visitor | Response:
    """The visitor if signed in with ``right``; otherwise the sign-in page or the 403 page."""
    visitor = await current(request, db)
    if visitor is None:
        return to_login(request)
    if not may(visitor.user.role, right):
        return forbidden(request, visitor, right)
    return visitor


async def enter_form(
    request: Request, db: AsyncSession, right: Right
) -> tuple[Visitor, FormData] | Response:
    """As ``enter``, for a form: it must also carry this session's CSRF token."""
    visitor = await enter(request, db, right)
    if isinstance(visitor, Response):
        return visitor
    form = await request.form()
    if not signer(request).csrf_ok(visitor.session, text(form, "csrf")):
        return bad_form(request, visitor)
    return visitor, form


# One thing of the shop's (an order, a ticket, a conversation), as its service reads it.
Row = TypeVar("Row")


async def enter_about(
    request: Request,
    db: AsyncSession,
    right: Right,
    what: str,
    find: Callable[[Visitor], Awaitable[Row]],
) -> tuple[Visitor, Row] | Response:
    """As ``enter``, for a page about one thing of the shop's, which ``find`` reads (an
    ``ApiError`` when the shop has no such thing): then the 404 page, naming ``what``."""
    visitor = await enter(request, db, right)
    if isinstance(visitor, Response):
        return visitor
    try:
        return visitor, await find(visitor)
    except ApiError:
        return not_found(request, visitor, what)


async def enter_form_about(
    request: Request,
    db: AsyncSession,
    right: Right,
    what: str,
    find: Callable[[Visitor], Awaitable[Row]],
) -> tuple[Visitor, FormData, Row] | Response:
    """As ``enter_about``, for a form (``enter_form``)."""
    entered = await enter_form(request, db, right)
    if isinstance(entered, Response):
        return entered
    visitor, form = entered
    try:
        return visitor, form, await find(visitor)
    except ApiError:
        return not_found(request, visitor, what)


def to_login(request: Request) -> Response:
    path = request.url.path.rstrip("/")
    query = urlencode({"next": path}) if _NEXT.match(path) and request.method == "GET" else ""
    return secure(RedirectResponse(LOGIN_PATH + (f"?{query}" if query else ""), 303))


def safe_next(value: Any) -> str:
    return value if isinstance(value, str) and _NEXT.match(value) else "/portal/orders"


# ---------------------------------------------------------------------------- forms


def text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def nonce_of(form: FormData) -> str | None:
    value = text(form, "nonce")
    return value if value is not None and _NONCE.fullmatch(value) else None


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def update_key(nonce: str | None) -> str | None:
    """The idempotency key (an Update's id) of a form sent with ``nonce``."""
    return f"portal-{nonce}" if nonce else None


def creation_ref(visitor: Visitor, nonce: str | None) -> str | None:
    """The idempotency reference a row created by this form keeps (as an API create's)."""
    return reference(f"portal:{visitor.merchant.id}", f"portal-{nonce}") if nonce else None


# ---------------------------------------------------------------------------- pages


def page(
    request: Request,
    visitor: Visitor | None,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    extra: dict[str, Any] = {"visitor": visitor}
    if visitor is not None:
        path = request.url.path
        extra["csrf"] = signer(request).csrf(visitor.session)
        extra["nav"] = [
            {
                "href": s.href,
                "label": s.label,
                "current": path == s.href or path.startswith(s.href + "/"),
            }
            for s in SECTIONS
            if may(visitor.user.role, s.right)
        ]
    if context.get("problem") and not context.get("problem_title"):
        # A refusal changed nothing; an answer that never came (a 5xx) may still change it.
        extra["problem_title"] = (
            "The change may not have been made" if status_code >= 500 else "Nothing was changed"
        )
    return render(templates, request, template, {**context, **extra}, status_code)


def message(
    request: Request,
    visitor: Visitor | None,
    status_code: int,
    heading: str,
    paragraphs: list[str],
    *,
    back: tuple[str, str] | None = None,
) -> HTMLResponse:
    context: dict[str, Any] = {"heading": heading, "paragraphs": paragraphs}
    if back is not None:
        context["back_href"], context["back_label"] = back
    return page(request, visitor, "portal/message.html", context, status_code)


def forbidden(request: Request, visitor: Visitor, right: Right) -> HTMLResponse:
    return message(
        request,
        visitor,
        403,
        "Your role does not include this",
        [
            f"You are signed in as {visitor.user.role}, and this page needs the right to "
            f"{RIGHT_WORDS[right]}. Your team's owner can change your role on the Team page."
        ],
    )


def not_found(request: Request, visitor: Visitor, what: str) -> HTMLResponse:
    return message(
        request,
        visitor,
        404,
        f"{what} not found",
        [f"Your shop has no such {what.lower()}. Check the link, or search for it."],
    )


def bad_cursor(
    request: Request, visitor: Visitor, err: ApiError, back: tuple[str, str]
) -> HTMLResponse:
    """The answer to a list's page whose cursor the portal did not make."""
    return message(
        request, visitor, err.status_code, "Cannot show this page", [refused(err)], back=back
    )


def bad_form(request: Request, visitor: Visitor | None) -> HTMLResponse:
    return message(
        request,
        visitor,
        403,
        "This form could not be accepted",
        [
            "It did not carry this page's security token, or the token belongs to another "
            "session. Nothing was changed.",
            "Go back, reload the page and send it again.",
        ],
    )


def done(path: str, notice: str) -> Response:
    """POST/redirect/GET: back to ``path``, which says ``notice`` (a key of the page's words)."""
    separator = "&" if "?" in path else "?"
    return secure(RedirectResponse(f"{path}{separator}{urlencode({'done': notice})}", 303))


def notice(request: Request, words: Mapping[str, str]) -> str | None:
    """What a page says after ``done`` sent the browser back to it: the words of its ``done``."""
    return words.get(request.query_params.get("done", ""))


# ---------------------------------------------------------------------------- words


def refused(err: ApiError) -> str:
    """The API's refusal, as a page says it."""
    return sentence(err.message)


def no_answer(what: str, check: str = "check") -> str:
    """That ``what`` did not answer, so the change may still be made."""
    return (
        f"{what} did not answer just now, so the change may not have been made: {check}, then "
        "try again."
    )


def sentence(message: str) -> str:
    """A message as a sentence: capital first, a full stop at the end."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message[-1] in ".!?" else message + "."


def error_words(error: Mapping[str, Any]) -> str:
    """What one of pydantic's errors says, without its "Value error, "."""
    return str(error.get("msg", "is not valid")).removeprefix("Value error, ")


# ---------------------------------------------------------------------------- changes


class Invalid(ApiError):
    """A form refused in the page's own words, before anything changed: by its own checks (a
    422), or by the API about what the form says. ``field`` is the field at fault (None: the
    form as a whole)."""

    status_code = 422
    code = "invalid_form"

    def __init__(self, field: str | None, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status_code = status_code


@dataclass(frozen=True)
class Failed:
    """A change that did not go through, as the page shown again says it: the status it
    answers, the sentence, and the field at fault (if one is)."""

    status: int
    problem: str
    field: str | None = None

    def nonce(self, sent: str | None) -> str | None:
        """The nonce of the form shown again: after a 5xx the one sent, so that sending it again
        is the same change; after a refusal None, a new one."""
        return sent if self.status >= 500 else None


async def attempt(
    db: AsyncSession,
    visitor: Visitor,
    what: str,
    run: Callable[[], Awaitable[Response]],
    *,
    unanswered: str,
    words: Callable[[ApiError], str] = refused,
    reload: tuple[Any, ...] = (),
) -> Response | Failed:
    """Runs a form's change: ``run`` checks the form (``Invalid``), calls the API's own service
    and answers (``done``). When it does not go through: a clean session (``recover``, with the
    rows of ``reload``) and what the page says, the API's refusal in ``words``, or
    ``unanswered`` when no answer came (logged as the portal's ``what``)."""
    try:
        return await run()
    except Invalid as err:
        failed = Failed(err.status_code, err.message, err.field)
    except ApiError as err:
        failed = Failed(err.status_code, words(err))
    except Exception:
        log.exception("the portal's %s failed", what)
        failed = Failed(503, unanswered)
    await recover(db, visitor, *reload)
    return failed


async def recover(db: AsyncSession, visitor: Visitor, *rows: Any) -> None:
    """After a failed change: a clean session, and the visitor (and ``rows``) read again (a
    rollback expires what was loaded; the page needs it)."""
    await db.rollback()
    for loaded in (visitor.user, visitor.merchant):
        if loaded in db:
            await db.refresh(loaded)
    for row in rows:
        await db.refresh(row)


# ---------------------------------------------------------------------------- parts of pages


# A message of a ticket (with the support team) or of a conversation (with a customer).
Message = TypeVar("Message", CaseMessagePublic, ContactMessagePublic)


def thread(
    visitor: Visitor, messages: Iterable[Message], other: Callable[[Message], str]
) -> list[dict[str, Any]]:
    """A ticket's or a conversation's messages, as the ``thread`` macro shows them: the shop's
    own by its name, printflow's automatic ones as such, the other side's as ``other`` names
    their author."""

    def author(m: Message) -> str:
        if m.author_kind == "merchant":
            return f"{visitor.merchant.name} (your shop)"
        if m.author_kind == "system":
            return "printflow (automatic message)"
        return other(m)

    return [
        {
            "kind": m.author_kind,
            "author": author(m),
            "at": at(visitor, m.created_at),
            "body": m.body,
            "attachments": m.attachments if isinstance(m, CaseMessagePublic) else [],
        }
        for m in messages
    ]


async def references(db: AsyncSession, visitor: Visitor, order_ids: list[str]) -> dict[str, str]:
    """The shop's own references of these orders (by id), as the shop knows them."""
    if not order_ids:
        return {}
    found = await db.exec(
        select(Order.id, Order.order_reference_id).where(
            col(Order.id).in_(set(order_ids)), Order.merchant_id == visitor.merchant.id
        )
    )
    return dict(found.all())


# ---------------------------------------------------------------------------- time in words


def zone(visitor: Visitor) -> tzinfo:
    """The merchant's time zone: every time on the portal is shown in it."""
    try:
        return ZoneInfo(visitor.merchant.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def at(visitor: Visitor, moment: datetime | None) -> dict[str, str] | None:
    """``moment`` as ``<time>`` shows it, in the merchant's time zone."""
    return when(moment, utcnow(), zone(visitor))
