"""Signing in and out of the portal, and the links e-mailed to set a password: an invite
(``/portal/invite/{token}``) and a reset (``/portal/reset``, then ``/portal/reset/{token}``).

The sign-in and reset forms have a short session of their own (subject ``-``) so that they,
too, carry a CSRF token. A wrong password answers 401, which the perimeter counts per client
address (``AUTH_FAILURE_LIMIT``); the account's own limit answers 429 (``api.services.portal``).
An unknown or used link is a 404, counted the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from api.deps import SessionDep, SettingsDep
from api.pages.html import secure, set_cookie
from api.pages.portal import common
from api.services import portal
from api.services.portal import PortalRefusal
from db.engine import utcnow
from db.models import Merchant
from runtime.settings import Settings

log = logging.getLogger("printflow.portal")

router = APIRouter(prefix="/portal", include_in_schema=False)

# The cookie of the short session the forms of someone not signed in carry their token in.
LOGIN_COOKIE = "pf_portal_login"


def sign_in(request: Request) -> portal.SignIn:
    """The app's sign-in check, with its per-account failure counts."""
    state = request.app.state
    found: portal.SignIn | None = getattr(state, "portal_sign_in", None)
    if found is None:
        found = state.portal_sign_in = portal.SignIn(state.limiter)
    return found


@router.get("", response_class=HTMLResponse)
async def home(request: Request, db: SessionDep) -> Response:
    if await common.current(request, db) is None:
        return common.to_login(request)
    return secure(RedirectResponse("/portal/orders", 303))


def _form_page(
    request: Request,
    settings: Settings,
    template: str,
    context: Mapping[str, object],
    status_code: int = 200,
) -> Response:
    """A page for someone not signed in, whose form carries the CSRF token of a short session
    of its own (made now if the browser has none)."""
    sign = common.signer(request)
    session = sign.read(request.cookies.get(LOGIN_COOKIE), utcnow())
    value = None
    if session is None or session.subject != portal.ANONYMOUS:
        value, session = sign.issue(portal.ANONYMOUS, utcnow(), portal.SIGN_IN_FORM_LIFETIME)
    response = common.page(
        request, None, template, {**context, "csrf": sign.csrf(session)}, status_code
    )
    if value is not None:
        set_cookie(response, settings, LOGIN_COOKIE, value, "/portal", portal.SIGN_IN_FORM_LIFETIME)
    return response


async def _anonymous_form_ok(request: Request) -> tuple[bool, dict[str, str]]:
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    sign = common.signer(request)
    session = sign.read(request.cookies.get(LOGIN_COOKIE), utcnow())
    ok = (
        session is not None
        and session.subject == portal.ANONYMOUS
        and sign.csrf_ok(session, fields.get("csrf"))
    )
    return ok, fields


def _signed_in(response: Response, settings: Settings, cookie: str) -> Response:
    set_cookie(response, settings, common.COOKIE, cookie, "/portal", portal.SESSION_LIFETIME)
    response.delete_cookie(LOGIN_COOKIE, path="/portal")
    return response


# ---------------------------------------------------------------------------- sign-in


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, db: SessionDep, settings: SettingsDep, next: str = ""
) -> Response:
    if await common.current(request, db) is not None:
        return secure(RedirectResponse(common.safe_next(next), 303))
    signed_out = request.query_params.get("signed_out") == "1"
    context = {"next": common.safe_next(next), "signed_out": signed_out, "email": ""}
    return _form_page(request, settings, "portal/login.html", context)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    ok, fields = await _anonymous_form_ok(request)
    if not ok:
        return common.bad_form(request, None)
    email = fields.get("email", "")[:320]
    next_path = common.safe_next(fields.get("next"))
    try:
        user = await sign_in(request).check(db, email, fields.get("password", ""))
    except PortalRefusal as refusal:
        context = {"next": next_path, "error": refusal.message, "email": email}
        return _form_page(request, settings, "portal/login.html", context, refusal.status_code)
    cookie = await portal.start_session(db, common.signer(request), user, utcnow())
    log.info("portal user %s signed in", user.id)
    return _signed_in(secure(RedirectResponse(next_path, 303)), settings, cookie)


@router.post("/logout")
async def logout(request: Request, db: SessionDep) -> Response:
    visitor = await common.current(request, db)
    if visitor is None:
        return common.to_login(request)
    form = await request.form()
    if not common.signer(request).csrf_ok(visitor.session, common.text(form, "csrf")):
        return common.bad_form(request, visitor)
    await portal.end_session(db, visitor.session)
    response = secure(RedirectResponse(f"{common.LOGIN_PATH}?signed_out=1", 303))
    response.delete_cookie(common.COOKIE, path="/portal")
    return response


# ---------------------------------------------------------------------------- links


def _link_gone(request: Request) -> Response:
    return common.message(
        request,
        None,
        404,
        "This link does not work (any more)",
        [
            "Links to set a password work once: an invite for 7 days, a reset for an hour. "
            "Ask your team's owner for a new invite, or ask for a new reset link.",
        ],
        back=("/portal/reset", "Ask for a new reset link"),
    )


def _purpose(request: Request) -> str:
    """Which link a page is for, by its path: an invite or a reset."""
    return portal.INVITE if request.url.path.startswith("/portal/invite/") else portal.RESET


@router.get("/invite/{token}", response_class=HTMLResponse)
@router.get("/reset/{token}", response_class=HTMLResponse)
async def password_form(
    request: Request, token: str, db: SessionDep, settings: SettingsDep
) -> Response:
    return await _password_form(request, db, settings, _purpose(request), token)


async def _password_form(
    request: Request,
    db: SessionDep,
    settings: Settings,
    purpose: str,
    token: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    found = await portal.open_link(db, token, utcnow())
    if found is None or found[0].purpose != purpose:
        return _link_gone(request)
    _, user = found
    merchant = await db.get(Merchant, user.merchant_id)
    context = {
        "purpose": purpose,
        "action": f"/portal/{purpose}/{token}",
        "user_name": user.name,
        "email": user.email,
        "merchant_name": merchant.name if merchant else "",
        "min_length": portal.PASSWORD_MIN,
        "error": error,
    }
    return _form_page(request, settings, "portal/password.html", context, status_code)


@router.post("/invite/{token}", response_class=HTMLResponse)
@router.post("/reset/{token}", response_class=HTMLResponse)
async def set_password(
    request: Request, token: str, db: SessionDep, settings: SettingsDep
) -> Response:
    purpose = _purpose(request)
    ok, fields = await _anonymous_form_ok(request)
    if not ok:
        return common.bad_form(request, None)
    found = await portal.open_link(db, token, utcnow())
    if found is None or found[0].purpose != purpose:
        return _link_gone(request)
    link, user = found
    try:
        await portal.set_password(db, link, user, fields.get("password", ""), utcnow())
    except PortalRefusal as refusal:
        return await _password_form(
            request, db, settings, purpose, token, refusal.message, refusal.status_code
        )
    cookie = await portal.start_session(db, common.signer(request), user, utcnow())
    log.info("portal user %s set a password (%s)", user.id, purpose)
    done = "welcome" if purpose == portal.INVITE else "password"
    response = secure(RedirectResponse(f"/portal/orders?done={done}", 303))
    return _signed_in(response, settings, cookie)


@router.get("/reset", response_class=HTMLResponse)
async def reset_form(request: Request, settings: SettingsDep) -> Response:
    return _form_page(request, settings, "portal/reset_request.html", {"sent": False})


@router.post("/reset", response_class=HTMLResponse)
async def request_reset(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    """Sends a reset link if the address has an account; the answer is the same either way,
    so the form tells no one who has an account."""
    ok, fields = await _anonymous_form_ok(request)
    if not ok:
        return common.bad_form(request, None)
    response = _form_page(request, settings, "portal/reset_request.html", {"sent": True})
    user = await portal.user_by_email(db, fields.get("email", "")[:320])
    merchant = await db.get(Merchant, user.merchant_id) if user is not None else None
    if user is not None and merchant is not None:
        token = await portal.new_link(db, user, portal.RESET, utcnow())
        # Sent after the answer, so how long it takes tells nothing either.
        response.background = BackgroundTask(
            portal.send_link, settings, user, merchant, portal.RESET, token
        )
    return response
