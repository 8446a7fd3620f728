"""What every page of the merchant portal shares: who is signed in, what their role lets them
do, the form checks (CSRF token, nonce), and the page, 403 and 404 answers.

A page calls ``enter(request, db, right)`` and a form ``enter_form(request, db, right)``; each
returns the ``Visitor`` or the answer to send instead: the sign-in page for a stranger, the 403
page for a role without ``right``, a 403 for a form without this session's CSRF token. Another
merchant's anything is looked up within the visitor's merchant and so is a 404, never a 403.

Every form that changes something carries a nonce, new with each page shown; the portal passes
``portal-{nonce}`` as the idempotency key (an Update's id) or the creation's reference to the
same service the API calls, so a double submit, or a resend after "the change may not have been
made", changes things once. A page shown again after a failure keeps the nonce of that form.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from api.idempotency import reference
from api.pages.html import render, secure, when
from api.services import portal
from api.services.portal import Visitor
from api.services.sessions import Signer
from db.engine import utcnow
from domain.portal import RIGHT_WORDS, Right, may
from runtime.settings import Settings

templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

COOKIE = "pf_portal"
LOGIN_COOKIE = "pf_portal_login"
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
    """The portal's signer: a key derived from ``SESSION_SECRET`` (so a console cookie is never
    a portal one), or a random key made once per process."""
    state = request.app.state
    found: Signer | None = getattr(state, "portal_signer", None)
    if found is None:
        settings: Settings = state.settings
        secret = (
            settings.session_secret.get_secret_value().encode()
            if settings.session_secret
            else secrets.token_bytes(32)
        )
        key = hmac.new(secret, b"printflow portal sessions", hashlib.sha256).digest()
        found = state.portal_signer = Signer(key)
    return found


def sign_in(request: Request) -> portal.SignIn:
    """The app's sign-in check, with its per-account failure counts."""
    state = request.app.state
    found: portal.SignIn | None = getattr(state, "portal_sign_in", None)
    if found is None:
        found = state.portal_sign_in = portal.SignIn(state.limiter)
    return found


def set_cookie(
    response: Response, settings: Settings, name: str, value: str, path: str, life: timedelta
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(life.total_seconds()),
        path=path,
        secure=settings.public_base_url.lower().startswith("https://"),
        httponly=True,
        samesite="strict",
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
