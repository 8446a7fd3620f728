"""The merchant portal's people (``/portal``, docs/portal.md): users, their passwords, the
links e-mailed to them (an invite, a password reset) and their sessions.

- **Passwords** are hashed with argon2id (``pwdlib``) at the first setting OWASP recommends
  against offline guessing (46 MiB, one pass, one lane: about 50 ms of CPU here; the library's
  default of 64 MiB, three passes and four lanes took 280 ms of every sign-in), in a worker
  thread, since a hash would otherwise stop every other request of the process. A stored hash
  of other parameters still verifies and is replaced at its user's next sign-in.
- **Links** carry 256 random bits; only their sha256 is kept. One use each; an invite lives 7
  days, a reset an hour; a new link of the same kind replaces the unused old one.
- **Sessions** are signed cookies (``api.services.sessions``) naming a row of
  ``portal_sessions``: signing out deletes the row, so a copied cookie stops working at once,
  and so do a new password (every session of that user) and a removal.
- **Sign-in is limited** per client address (a failure answers 401, which the perimeter
  counts: ``AUTH_FAILURE_LIMIT``) and per account: ``ACCOUNT_FAILURES`` failed passwords for
  one e-mail address refuse its sign-in for the rest of the window, right password or not,
  while a password reset still works. Both count where ``RATE_LIMIT_STORAGE`` says.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import RateLimitItemPerMinute
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.perimeter import Limiter
from api.services.sessions import Session, Signer
from db.models import Merchant, MerchantUser, PortalSession, PortalToken
from domain.portal import Role
from integrations.mail import Mailer, render_email
from runtime.settings import Settings

log = logging.getLogger("printflow.portal")

SESSION_LIFETIME = timedelta(hours=12)
SIGN_IN_FORM_LIFETIME = timedelta(hours=1)
INVITE_LIFETIME = timedelta(days=7)
RESET_LIFETIME = timedelta(hours=1)
INVITE, RESET = "invite", "reset"
ANONYMOUS = "-"
# Long enough to resist guessing, short enough to type; the upper bound keeps one hash cheap.
PASSWORD_MIN, PASSWORD_MAX = 12, 200
# Failed passwords for one account, in any 15 minutes.
ACCOUNT_FAILURES = RateLimitItemPerMinute(10, 15)

# OWASP Password Storage Cheat Sheet: argon2id, m=47104 KiB, t=1, p=1.
_HASHER = PasswordHash((Argon2Hasher(memory_cost=47104, time_cost=1, parallelism=1),))


@functools.cache
def _dummy_hash() -> str:
    """Verified when no user (or no password) matches, so an unknown address costs the same
    time; made at the first sign-in, not when the module is imported."""
    return _HASHER.hash(secrets.token_urlsafe(16))


class PortalRefusal(Exception):
    """What a person is told, in words; nothing was changed."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class Visitor:
    """Who is signed in: the session, the user and their merchant."""

    session: Session
    user: MerchantUser
    merchant: Merchant


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalize_email(value: str) -> str:
    return value.strip().lower()


def password_problem(password: str, email: str) -> str | None:
    if len(password) < PASSWORD_MIN:
        return f"Choose a password of at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"Choose a password of at most {PASSWORD_MAX} characters."
    if password.strip().lower() == email.lower():
        return "Choose a password other than your e-mail address."
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def _verify(password: str, stored: str | None) -> tuple[bool, str | None]:
    return await asyncio.to_thread(_HASHER.verify_and_update, password, stored or _dummy_hash())


# ---------------------------------------------------------------------------- users


async def user_by_email(db: AsyncSession, email: str) -> MerchantUser | None:
    wanted = normalize_email(email)
    return (await db.exec(select(MerchantUser).where(MerchantUser.email == wanted))).first()


async def team(db: AsyncSession, merchant_id: str) -> list[MerchantUser]:
    query = (
        select(MerchantUser)
        .where(MerchantUser.merchant_id == merchant_id)
        .order_by(col(MerchantUser.created_at), col(MerchantUser.id))
    )
    return list((await db.exec(query)).all())


async def team_member(db: AsyncSession, merchant_id: str, user_id: str) -> MerchantUser | None:
    """The user of this merchant with this id; None for another merchant's (so: a 404)."""
    user = await db.get(MerchantUser, user_id)
    return user if user is not None and user.merchant_id == merchant_id else None


def new_user(merchant_id: str, email: str, name: str, role: Role, now: datetime) -> MerchantUser:
    return MerchantUser(
        id="usr_" + uuid.uuid4().hex,
        merchant_id=merchant_id,
        email=normalize_email(email),
        name=name.strip(),
        role=role.value,
        created_at=now,
    )


async def invite(
    db: AsyncSession, merchant_id: str, email: str, name: str, role: Role, now: datetime
) -> tuple[MerchantUser, str]:
    """A new user who has yet to set a password, and their invite link's token, committed."""
    if await user_by_email(db, email) is not None:
        raise PortalRefusal(
            "Someone with this e-mail address already has a printflow account. Each person "
            "signs in with one address; ask them for another one, or invite someone else.",
            409,
        )
    user = new_user(merchant_id, email, name, role, now)
    db.add(user)
    token = add_link(db, user.id, INVITE, now)
    try:
        await db.commit()
    except IntegrityError:  # the same address, invited at the same moment
        await db.rollback()
        raise PortalRefusal(
            "Someone with this e-mail address already has an account.", 409
        ) from None
    return user, token


async def new_link(db: AsyncSession, user: MerchantUser, purpose: str, now: datetime) -> str:
    """A fresh link of ``purpose`` for ``user``; the unused ones before it stop working."""
    await db.exec(
        delete(PortalToken).where(
            col(PortalToken.user_id) == user.id,
            col(PortalToken.purpose) == purpose,
            col(PortalToken.used_at).is_(None),
        )  # type: ignore[call-overload]
    )
    token = add_link(db, user.id, purpose, now)
    await db.commit()
    return token


def add_link(db: AsyncSession, user_id: str, purpose: str, now: datetime) -> str:
    token = secrets.token_urlsafe(32)
    lifetime = INVITE_LIFETIME if purpose == INVITE else RESET_LIFETIME
    db.add(
        PortalToken(
            id=_digest(token),
            user_id=user_id,
            purpose=purpose,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


async def open_link(
    db: AsyncSession, token: str, now: datetime
) -> tuple[PortalToken, MerchantUser] | None:
    """The unused, unexpired link with this token and its user; None for anything else."""
    if not token or len(token) > 100:
        return None
    link = await db.get(PortalToken, _digest(token))
    if link is None or link.used_at is not None or link.expires_at <= now:
        return None
    user = await db.get(MerchantUser, link.user_id)
    return (link, user) if user is not None else None


async def set_password(
    db: AsyncSession, link: PortalToken, user: MerchantUser, password: str, now: datetime
) -> None:
    """Uses the link once: the new password, and every session of the user ended."""
    problem = password_problem(password, user.email)
    if problem is not None:
        raise PortalRefusal(problem)
    user.password_hash = await hash_password(password)
    link.used_at = now
    db.add_all([user, link])
    await db.exec(delete(PortalSession).where(col(PortalSession.user_id) == user.id))  # type: ignore[call-overload]
    await db.commit()


async def change_role(
    db: AsyncSession, acting: MerchantUser, user: MerchantUser, role: Role
) -> None:
    if user.role == Role.OWNER and role != Role.OWNER and await _last_owner(db, user):
        raise PortalRefusal(
            "A team needs at least one owner: make someone else an owner first.", 409
        )
    user.role = role.value
    db.add(user)
    await db.commit()


async def remove(db: AsyncSession, user: MerchantUser) -> None:
    """The user, their links and sessions gone; the team's last owner stays."""
    if user.role == Role.OWNER and await _last_owner(db, user):
        raise PortalRefusal(
            "A team needs at least one owner: make someone else an owner first.", 409
        )
    await db.exec(delete(PortalSession).where(col(PortalSession.user_id) == user.id))  # type: ignore[call-overload]
    await db.exec(delete(PortalToken).where(col(PortalToken.user_id) == user.id))  # type: ignore[call-overload]
    await db.delete(user)
    await db.commit()


async def _last_owner(db: AsyncSession, user: MerchantUser) -> bool:
    owners = [u for u in await team(db, user.merchant_id) if u.role == Role.OWNER]
    return [u.id for u in owners] == [user.id]


# ---------------------------------------------------------------------------- signing in


class SignIn:
    """Checks e-mail and password, counting failures per account (``ACCOUNT_FAILURES``)."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def check(self, db: AsyncSession, email: str, password: str) -> MerchantUser:
        """The user, or ``PortalRefusal`` (401, or 429 while the account's limit is spent)."""
        account = normalize_email(email)[:320]
        if not await self._limiter.test(ACCOUNT_FAILURES, "portal-sign-in", _digest(account)):
            raise PortalRefusal(
                "Too many wrong passwords for this account: sign-in is paused for up to 15 "
                "minutes. To get in now, reset your password by e-mail.",
                429,
            )
        user = await user_by_email(db, account) if account else None
        ok, rehashed = await _verify(password[:PASSWORD_MAX], user.password_hash if user else None)
        if user is None or user.password_hash is None or not ok:
            await self._limiter.hit(ACCOUNT_FAILURES, "portal-sign-in", _digest(account))
            raise PortalRefusal(
                "That e-mail address and password do not match an account. Check both, or "
                "reset your password.",
                401,
            )
        if rehashed is not None:  # hashed with other parameters: stored again with today's
            user.password_hash = rehashed
            db.add(user)
            await db.commit()
        return user


async def start_session(db: AsyncSession, signer: Signer, user: MerchantUser, now: datetime) -> str:
    """The signed cookie value of a new session, its row committed."""
    value, session = signer.issue(user.id, now, SESSION_LIFETIME)
    db.add(
        PortalSession(
            id=_digest(session.sid), user_id=user.id, created_at=now, expires_at=session.expires_at
        )
    )
    await db.commit()
    return value


async def visitor(
    db: AsyncSession, signer: Signer, cookie: str | None, now: datetime
) -> Visitor | None:
    """Who this cookie signs in, while its session row lasts; None otherwise."""
    session = signer.read(cookie, now)
    if session is None or session.subject == ANONYMOUS:
        return None
    row = await db.get(PortalSession, _digest(session.sid))
    if row is None or not hmac.compare_digest(row.user_id, session.subject):
        return None
    if row.expires_at <= now:
        return None
    user = await db.get(MerchantUser, row.user_id)
    if user is None or user.password_hash is None:
        return None
    merchant = await db.get(Merchant, user.merchant_id)
    return Visitor(session, user, merchant) if merchant is not None else None


async def end_session(db: AsyncSession, session: Session) -> None:
    await db.exec(delete(PortalSession).where(col(PortalSession.id) == _digest(session.sid)))  # type: ignore[call-overload]
    await db.commit()


# ---------------------------------------------------------------------------- e-mails


def link_url(public_base_url: str, purpose: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/portal/{purpose}/{token}"


async def send_link(
    settings: Settings, user: MerchantUser, merchant: Merchant, purpose: str, token: str
) -> bool:
    """E-mails the link; False (logged) when the mail server did not take it."""
    url = link_url(settings.public_base_url, purpose, token)
    return await send_link_url(
        settings, user.email, user.name, user.role, merchant.name, purpose, url
    )


async def send_link_url(
    settings: Settings, to: str, person: str, role: str, merchant: str, purpose: str, url: str
) -> bool:
    if purpose == INVITE:
        subject = f"You are invited to {merchant} on printflow"
        lifetime = "7 days"
    else:
        subject = "Reset your printflow password"
        lifetime = "1 hour"
    text, html = render_email(
        f"portal_{purpose}", person=person, merchant=merchant, url=url, lifetime=lifetime, role=role
    )
    try:
        await Mailer(settings).send(to, subject, text, html)
    except Exception:
        log.exception("the portal's %s e-mail was not sent", purpose)
        return False
    return True
