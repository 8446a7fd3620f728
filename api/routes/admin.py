"""Operators' API: create merchants. Guarded by ``X-Admin-Token``."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from api.deps import AdminDep, SessionDep, hash_api_key
from db.models import Merchant
from domain.orders import Approval, Email

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


class MerchantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    support_email: Email
    webhook_url: HttpUrl | None = None
    approval: Approval = "auto"


class MerchantCreated(BaseModel):
    id: str
    name: str
    support_email: str
    webhook_url: str | None
    approval: Approval
    created_at: datetime
    api_key: str = Field(description="shown once; printflow keeps only its hash")
    webhook_secret: str = Field(description="shown once; signs the webhooks sent to you")


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
