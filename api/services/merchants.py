"""Merchants, as operators manage them: create one (its secrets shown once), change its support
plan, time zone, country and customer success manager, rotate its API key or webhook secret.

Rotation: the new key or secret is shown once (the key stored as its sha256); the one it
replaces keeps working until ``KEY_ROTATION_OVERLAP`` (24 h) from now, so the merchant can roll
the new one out without a gap. A second rotation inside that window replaces the older one at
once: only the current and the one just before it ever work."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from fastapi.exceptions import RequestValidationError
from pydantic import HttpUrl, TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import NotFound
from api.idempotency import WITHHELD
from api.schemas import (
    ApiKeyRotated,
    MerchantCreate,
    MerchantCreated,
    MerchantPublic,
    MerchantUpdate,
    WebhookSecretRotated,
)
from api.services import portal
from api.services.credentials import hash_credential, new_credential
from db.engine import utcnow
from db.models import Agent, Merchant
from domain.portal import Role
from domain.webhook_urls import addresses_problem, literal_address, url_problem

RESOLVE_TIMEOUT = 3.0
# What ``merchants.webhook_url`` holds at most.
WEBHOOK_URL_MAX = 2000
_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _invalid(field: str, message: str) -> RequestValidationError:
    # Rendered by the API's validation handler: the same 422 envelope as a malformed body.
    return RequestValidationError(
        [{"loc": ("body", field), "msg": message, "type": "value_error", "input": None}]
    )


def public(merchant: Merchant) -> MerchantPublic:
    return MerchantPublic.model_validate(merchant, from_attributes=True)


async def _resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to; none when it does not (yet) resolve."""
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except (OSError, TimeoutError):
        return []
    return [str(info[4][0]) for info in infos]


async def check_webhook_url(url: str, *, allow_private: bool) -> None:
    """422 naming ``webhook_url`` unless it is https to public addresses (docs/webhooks.md,
    "Setting it up"). A name that does not resolve yet is taken: every delivery checks again."""
    problem = url_problem(url, allow_private=allow_private)
    if problem is None and not allow_private:
        host = urlsplit(url).hostname or ""
        if literal_address(host) is None:
            problem = addresses_problem(host, await _resolve(host), allow_private=False)
    if problem is not None:
        raise _invalid("webhook_url", problem)


async def set_webhook_url(
    session: AsyncSession, merchant_id: str, url: str | None, *, allow_private: bool
) -> MerchantPublic:
    """Sets the merchant's ``webhook_url``, checked as at creation (a 422 naming
    ``webhook_url``) and stored as the admin API stores it (pydantic's ``HttpUrl``); None or
    blank clears it, and no events are sent from then on. Deliveries read the URL when they
    send; whether to make events at all is read again within half a minute
    (``activities.webhooks.emitter``)."""
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    value = (url or "").strip()
    if value:
        if len(value) > WEBHOOK_URL_MAX:
            raise _invalid("webhook_url", f"must be at most {WEBHOOK_URL_MAX} characters")
        try:
            normalized: str | None = str(_HTTP_URL.validate_python(value))
        except ValidationError:
            normalized = None
        await check_webhook_url(normalized or value, allow_private=allow_private)
        if normalized is None:
            raise _invalid("webhook_url", "is not a valid URL")
        if len(normalized) > WEBHOOK_URL_MAX:
            raise _invalid("webhook_url", f"must be at most {WEBHOOK_URL_MAX} characters")
        value = normalized
    merchant.webhook_url = value or None
    session.add(merchant)
    await session.commit()
    return public(merchant)


async def create_merchant(
    session: AsyncSession,
    body: MerchantCreate,
    *,
    allow_private_webhooks: bool = False,
    idempotency_ref: str | None = None,
    public_base_url: str = "",
) -> MerchantCreated:
    """A new merchant, its API key and webhook secret shown once. A create that runs again
    with the same Idempotency-Key (its stored answer was lost) answers the merchant the first
    run made, its secrets withheld as in a replay."""
    if idempotency_ref is not None:
        made = (
            await session.exec(select(Merchant).where(Merchant.idempotency_ref == idempotency_ref))
        ).first()
        if made is not None:
            return MerchantCreated(
                **public(made).model_dump(),
                api_key=WITHHELD,
                webhook_secret=WITHHELD,
                owner_invite_url=WITHHELD if body.owner is not None else None,
            )
    if body.webhook_url is not None:
        await check_webhook_url(str(body.webhook_url), allow_private=allow_private_webhooks)
    if body.owner is not None and await portal.user_by_email(session, body.owner.email):
        raise _invalid("owner", "this e-mail address already has a portal account")
    api_key = new_credential("pf_")
    now = utcnow()
    merchant = Merchant(
        id="mer_" + uuid.uuid4().hex,
        name=body.name,
        support_email=str(body.support_email),
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        approval=body.approval,
        api_key_hash=hash_credential(api_key),
        api_key_prefix=api_key[:10],
        webhook_secret=new_credential("whsec_"),
        created_at=now,
        plan=body.plan.value,
        timezone=body.timezone,
        country=body.country,
        idempotency_ref=idempotency_ref,
    )
    session.add(merchant)
    invite_url = None
    if body.owner is not None:
        await session.flush()  # the merchant's row first: the owner's refers to it
        owner = portal.new_user(merchant.id, body.owner.email, body.owner.name, Role.OWNER, now)
        session.add(owner)
        token = portal.add_link(session, owner.id, portal.INVITE, now)
        invite_url = portal.link_url(public_base_url, portal.INVITE, token)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if body.owner is None:
            raise
        # The owner's address was taken between the check above and this commit.
        raise _invalid("owner", "this e-mail address already has a portal account") from None
    return MerchantCreated(
        **public(merchant).model_dump(),
        api_key=api_key,
        webhook_secret=merchant.webhook_secret,
        owner_invite_url=invite_url,
    )


async def update_merchant(
    session: AsyncSession, merchant_id: str, body: MerchantUpdate
) -> MerchantPublic:
    """Changes what ``body`` sends, all or nothing: 404 for an unknown merchant, 422 for a CSM
    that is not an active agent of role ``csm``."""
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    sent = body.model_fields_set
    if "csm_agent_id" in sent and body.csm_agent_id is not None:
        agent = await session.get(Agent, body.csm_agent_id)
        if agent is None or agent.role != "csm" or not agent.active:
            raise _invalid(
                "csm_agent_id", f"no active agent of role csm with id {body.csm_agent_id[:40]!r}"
            )
    if "plan" in sent and body.plan is not None:
        merchant.plan = body.plan.value
    if "timezone" in sent and body.timezone is not None:
        merchant.timezone = body.timezone
    if "country" in sent:
        merchant.country = body.country
    if "csm_agent_id" in sent:
        merchant.csm_agent_id = body.csm_agent_id
    session.add(merchant)
    await session.commit()
    return public(merchant)


def accepts_key(merchant: Merchant, digest: str, now: datetime | None = None) -> bool:
    """Whether an API key of sha256 ``digest`` is the merchant's current one, or the previous
    one still inside its overlap window."""
    if hmac.compare_digest(merchant.api_key_hash.encode(), digest.encode()):
        return True
    previous, until = merchant.previous_api_key_hash, merchant.previous_api_key_valid_until
    return (
        previous is not None
        and until is not None
        and hmac.compare_digest(previous.encode(), digest.encode())
        and (now or utcnow()) < until
    )


async def rotate_api_key(
    session: AsyncSession, merchant_id: str, overlap: timedelta
) -> ApiKeyRotated:
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    api_key = new_credential("pf_")
    until = utcnow() + overlap
    merchant.previous_api_key_hash = merchant.api_key_hash
    merchant.previous_api_key_valid_until = until
    merchant.api_key_hash = hash_credential(api_key)
    merchant.api_key_prefix = api_key[:10]
    session.add(merchant)
    await session.commit()
    return ApiKeyRotated(api_key=api_key, previous_valid_until=until)


async def rotate_webhook_secret(
    session: AsyncSession, merchant_id: str, overlap: timedelta
) -> WebhookSecretRotated:
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant {merchant_id}")
    until = utcnow() + overlap
    merchant.previous_webhook_secret = merchant.webhook_secret
    merchant.previous_webhook_secret_valid_until = until
    merchant.webhook_secret = new_credential("whsec_")
    session.add(merchant)
    await session.commit()
    return WebhookSecretRotated(webhook_secret=merchant.webhook_secret, previous_valid_until=until)
