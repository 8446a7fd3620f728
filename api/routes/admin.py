"""Operators' API: create merchants. Guarded by ``X-Admin-Token``."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import AdminDep, SessionDep, hash_api_key
from api.schemas import MerchantCreate, MerchantCreated
from db.models import Merchant

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


@router.post("/merchants", status_code=201, response_model=MerchantCreated)
async def create_merchant(body: MerchantCreate, session: SessionDep) -> MerchantCreated:
    api_key = "pf_" + secrets.token_urlsafe(32)
    merchant = Merchant(
        id="mer_" + uuid.uuid4().hex,
        name=body.name,
        support_email=str(body.support_email),
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        approval=body.approval,
        api_key_hash=hash_api_key(api_key),
        api_key_prefix=api_key[:10],
        webhook_secret="whsec_" + secrets.token_urlsafe(32),
        created_at=datetime.now(UTC),
    )
    session.add(merchant)
    await session.commit()
    return MerchantCreated(
        id=merchant.id,
        name=merchant.name,
        support_email=merchant.support_email,
        webhook_url=merchant.webhook_url,
        approval=body.approval,
        created_at=merchant.created_at,
        api_key=api_key,
        webhook_secret=merchant.webhook_secret,
    )
