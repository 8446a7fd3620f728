"""Portal pages: team (docs/portal.md), for owners.

- ``GET /portal/team``: the shop's users (name, e-mail, role, whether they set a password yet)
  and the invite form.
- ``POST /portal/team/invite``: a new user and their invite by e-mail (``portal.invite``,
  ``portal.send_link``). When the mail server did not take it, the page says so and offers to
  send it again.
- ``POST /portal/team/{user_id}/resend``: a new invite link, the unused one before it dead.
- ``POST /portal/team/{user_id}/role`` and ``…/remove``: the last owner stays
  (``PortalRefusal``, shown with its status).

Another merchant's user is a 404. An invite sent twice makes one user: the second finds the
address taken, and when the user it belongs to is this shop's, with this form's name and role
and no password yet, it is taken for the first send of the same form and answered as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from api.deps import SessionDep, SettingsDep
from api.pages.portal import common
from api.schemas import PortalOwner
from api.services import portal
from api.services.portal import PortalRefusal, Visitor
from db.engine import utcnow
from db.models import MerchantUser, PortalToken
from domain.portal import ROLE_WORDS, Right, Role
from runtime.settings import Settings

log = logging.getLogger("printflow.portal")

router = APIRouter(prefix="/portal", include_in_schema=False)

PATH = "/portal/team"
ROLE_NAMES = {Role.OWNER: "Owner", Role.SUPPORT: "Support", Role.DEVELOPER: "Developer"}

# What the page says after a change; ``{name}``, ``{email}`` and ``{role}`` are the user's that
# the redirect names (``?user=``), when they are still on the team.
DONE = {
    "invited": "{name} is invited: an e-mail with a link to set a password went to {email}. "
    "The link works for 7 days.",
    "resent": "A new invite went to {email}; the link in the one before no longer works.",
    "role_changed": "{name} is now {role}.",
    "removed": "They are no longer on the team: their sessions ended, and they cannot sign in.",
}
NOT_SENT = "invite_not_sent"


# ---------------------------------------------------------------------------- the page


@router.get("/team", response_class=HTMLResponse)
async def team_page(request: Request, db: SessionDep) -> Response:
    visitor = await common.enter(request, db, Right.TEAM)
    if isinstance(visitor, Response):
        return visitor
    done = request.query_params.get("done", "")
    named = request.query_params.get("user") or ""
    user = await portal.team_member(db, visitor.merchant.id, named[:40]) if named else None
    notice = None
    unsent = None
    if done == NOT_SENT and user is not None and user.password_hash is None:
        unsent = _person(user)
    elif done in DONE and (user is not None or "{" not in DONE[done]):
        notice = DONE[done].format(**(_person(user) if user is not None else {}))
    return await _team(request, db, visitor, 200, notice=notice, unsent=unsent)


def _person(user: MerchantUser) -> dict[str, str]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "role": _role_words(user.role),
    }


def _role_words(role: str) -> str:
    try:
        return ROLE_WORDS[Role(role)]
    except ValueError:
        return role


async def _team(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    status_code: int,
    *,
    notice: str | None = None,
    unsent: dict[str, str] | None = None,
    problem: str | None = None,
    field: str | None = None,
    typed: dict[str, str] | None = None,
    nonce: str | None = None,
) -> Response:
    users = await portal.team(db, visitor.merchant.id)
    invites = await _invites(db, [u.id for u in users if u.password_hash is None])
    rows = [
        {
            **_person(u),
            "role_value": u.role,
            "password_set": u.password_hash is not None,
            "invite_until": common.at(visitor, invites.get(u.id)),
            "invite_expired": u.password_hash is None and u.id not in invites,
            "you": u.id == visitor.user.id,
        }
        for u in users
    ]
    context = {
        "rows": rows,
        "roles": [{"value": r.value, "name": ROLE_NAMES[r], "words": ROLE_WORDS[r]} for r in Role],
        "owners": sum(1 for u in users if u.role == Role.OWNER),
        "notice": notice,
        "unsent": unsent,
        "problem": problem,
        "field": field,
        "typed": typed or {"email": "", "name": "", "role": Role.SUPPORT.value},
        "form_nonce": nonce or common.new_nonce(),
    }
    return common.page(request, visitor, "portal/team.html", context, status_code)


async def _invites(db: AsyncSession, user_ids: list[str]) -> dict[str, Any]:
    """Until when each user's unused invite link works (none: expired or never sent)."""
    if not user_ids:
        return {}
    found = await db.exec(
        select(PortalToken.user_id, PortalToken.expires_at).where(
            col(PortalToken.user_id).in_(user_ids),
            PortalToken.purpose == portal.INVITE,
            col(PortalToken.used_at).is_(None),
            PortalToken.expires_at > utcnow(),
        )
    )
    return {user_id: until for user_id, until in found.all()}


def _role_of(form: FormData) -> Role | None:
    try:
        return Role(common.text(form, "role") or "")
    except ValueError:
        return None


ROLE_PROBLEM = "Choose a role: owner, support or developer."


# ---------------------------------------------------------------------------- inviting


@router.post("/team/invite", response_class=HTMLResponse)
async def invite(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    entered = await common.enter_form(request, db, Right.TEAM)
    if isinstance(entered, Response):
        return entered
    visitor, form = entered
    nonce = common.nonce_of(form)
    typed = {
        "email": (common.text(form, "email") or "").strip()[:320],
        "name": (common.text(form, "name") or "").strip()[:200],
        "role": common.text(form, "role") or "",
    }

    async def refused(status: int, problem: str, field: str | None, keep: bool) -> Response:
        return await _team(
            request,
            db,
            visitor,
            status,
            problem=problem,
            field=field,
            typed=typed,
            nonce=nonce if keep else None,
        )

    try:
        person = PortalOwner.model_validate({"email": typed["email"], "name": typed["name"]})
    except ValidationError as err:
        field, problem = _first_error(err)
        return await refused(422, problem, field, True)
    role = _role_of(form)
    if role is None:
        return await refused(422, ROLE_PROBLEM, "role", True)
    try:
        user, token = await portal.invite(
            db, visitor.merchant.id, person.email, person.name, role, utcnow()
        )
    except PortalRefusal as refusal:
        await common.recover(db, visitor)
        earlier = await portal.user_by_email(db, person.email)
        if (
            earlier is not None
            and earlier.merchant_id == visitor.merchant.id
            and earlier.name == person.name.strip()
            and earlier.role == role
            and earlier.password_hash is None
        ):  # this form, sent a second time: the first made the user
            return common.done(f"{PATH}?user={earlier.id}", "invited")
        return await refused(refusal.status_code, refusal.message, "email", False)
    log.info("portal user %s invited %s as %s", visitor.user.id, user.id, role)
    return await _send(settings, visitor, user, token, "invited")


async def _send(
    settings: Settings, visitor: Visitor, user: MerchantUser, token: str, done: str
) -> Response:
    sent = await portal.send_link(settings, user, visitor.merchant, portal.INVITE, token)
    return common.done(f"{PATH}?user={user.id}", done if sent else NOT_SENT)


# What a field of the invite form is called when it is wrong.
FIELD_WORDS = {"email": "E-mail address", "name": "Name"}


def _first_error(err: ValidationError) -> tuple[str | None, str]:
    first = err.errors()[0]
    where = [str(p) for p in first.get("loc", ())]
    field = where[0] if where else None
    label = FIELD_WORDS.get(field or "", "The form")
    kind = str(first.get("type", ""))
    if kind in ("missing", "string_too_short"):
        return field, f"Fill in “{label}”."
    if kind == "string_too_long":
        return field, f"{label}: at most {(first.get('ctx') or {}).get('max_length')} characters."
    return field, f"{label}: {common.error_words(first).rstrip('.')}."


@router.post("/team/{user_id}/resend", response_class=HTMLResponse)
async def resend(request: Request, user_id: str, db: SessionDep, settings: SettingsDep) -> Response:
    entered = await _member_form(request, db, user_id)
    if isinstance(entered, Response):
        return entered
    visitor, _, user = entered
    if user.password_hash is not None:
        return await _team(
            request,
            db,
            visitor,
            409,
            problem=(
                f"{user.name} has already set a password and signs in: no invite is needed. "
                "Someone who forgot their password resets it from the sign-in page."
            ),
        )
    token = await portal.new_link(db, user, portal.INVITE, utcnow())
    log.info("portal user %s sent the invite of %s again", visitor.user.id, user.id)
    return await _send(settings, visitor, user, token, "resent")


# ---------------------------------------------------------------------------- roles, removal


@router.post("/team/{user_id}/role", response_class=HTMLResponse)
async def change_role(request: Request, user_id: str, db: SessionDep) -> Response:
    entered = await _member_form(request, db, user_id)
    if isinstance(entered, Response):
        return entered
    visitor, form, user = entered
    role = _role_of(form)
    if role is None:
        return await _team(request, db, visitor, 422, problem=ROLE_PROBLEM)
    refused = await _change(
        request, db, visitor, user, portal.change_role(db, visitor.user, user, role)
    )
    if refused is not None:
        return refused
    log.info("portal user %s made %s %s", visitor.user.id, user.id, role)
    return common.done(f"{PATH}?user={user.id}", "role_changed")


@router.post("/team/{user_id}/remove", response_class=HTMLResponse)
async def remove(request: Request, user_id: str, db: SessionDep) -> Response:
    entered = await _member_form(request, db, user_id)
    if isinstance(entered, Response):
        return entered
    visitor, _, user = entered
    refused = await _change(request, db, visitor, user, portal.remove(db, user))
    if refused is not None:
        return refused
    log.info("portal user %s removed %s", visitor.user.id, user_id)
    if user_id == visitor.user.id:  # their own session has ended with the rest
        response = common.to_login(request)
        response.delete_cookie(common.COOKIE, path="/portal")
        return response
    return common.done(PATH, "removed")


async def _member_form(
    request: Request, db: AsyncSession, user_id: str
) -> tuple[Visitor, FormData, MerchantUser] | Response:
    """As ``common.enter_form``, for a form about someone on the team: the 404 page when the
    shop has nobody with ``user_id``."""
    entered = await common.enter_form(request, db, Right.TEAM)
    if isinstance(entered, Response):
        return entered
    visitor, form = entered
    user = await portal.team_member(db, visitor.merchant.id, user_id)
    if user is None:
        return common.message(
            request,
            visitor,
            404,
            "Not on your team",
            [
                "Nobody on your team has this id: they may have been removed already, or the "
                "link is not your shop's."
            ],
            back=(PATH, "Back to your team"),
        )
    return visitor, form, user


async def _change(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    user: MerchantUser,
    change: Awaitable[None],
) -> Response | None:
    """Makes ``change`` to ``user``; None when it was made, else the page again saying why not
    (the last owner stays)."""
    try:
        await change
    except PortalRefusal as refusal:
        await common.recover(db, visitor)
        problem = f"{user.name} is the team's only owner. {refusal.message}"
        return await _team(request, db, visitor, refusal.status_code, problem=problem)
    return None
