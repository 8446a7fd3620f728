"""Merchants, as operators manage them: create one (its secrets shown once), change its support
plan, time zone, country and customer success manager."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi.exceptions import RequestValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import NotFound
from api.schemas import MerchantCreate, MerchantCreated, MerchantPublic, MerchantUpdate
from api.services.credentials import hash_credential, new_credential
from db.models import Agent, Merchant


def _invalid(field: str, message: str) -> RequestValidationError:
    # Rendered by the API's validation handler: the same 422 envelope as a malformed body.
    return RequestValidationError(
        [{"loc": ("body", field), "msg": message, "type": "value_error", "input": None}]
    )


def public(merchant: Merchant) -> MerchantPublic:
    return MerchantPublic.model_validate(merchant, from_attributes=True)


async def create_merchant(session: AsyncSession, body: MerchantCreate) -> MerchantCreated:
    api_key = new_credential("pf_")
    merchant = Merchant(
        id="mer_" + uuid.uuid4().hex,
        name=body.name,
        support_email=str(body.support_email),
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        approval=body.approval,
        api_key_hash=hash_credential(api_key),
        api_key_prefix=api_key[:10],
        webhook_secret=new_credential("whsec_"),
        created_at=datetime.now(UTC),
        plan=body.plan.value,
        timezone=body.timezone,
        country=body.country,
    )
    session.add(merchant)
    await session.commit()
    return MerchantCreated(
        **public(merchant).model_dump(),
        api_key=api_key,
        webhook_secret=merchant.webhook_secret,
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
