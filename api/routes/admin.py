"""Operators' API: merchants (created, their support plan changed, their credentials rotated)
and the support team's agents. Guarded by ``X-Admin-Token``."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from api.deps import AdminDep, IdempotencyRefDep, SessionDep, SettingsDep
from api.schemas import (
    AgentCreate,
    AgentCreated,
    AgentList,
    AgentPublic,
    ApiKeyRotated,
    MerchantCreate,
    MerchantCreated,
    MerchantPublic,
    MerchantUpdate,
    WebhookSecretRotated,
)
from api.services import agents, merchants, portal

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


@router.post(
    "/merchants",
    status_code=201,
    response_model=MerchantCreated,
    responses={
        422: {
            "description": "unknown plan, time zone or country, a webhook_url that is not a "
            "public https address, an owner e-mail that already has a portal account, or a bad "
            "field"
        }
    },
)
async def create_merchant(
    body: MerchantCreate,
    session: SessionDep,
    settings: SettingsDep,
    ref: IdempotencyRefDep,
    tasks: BackgroundTasks,
) -> MerchantCreated:
    created = await merchants.create_merchant(
        session,
        body,
        allow_private_webhooks=settings.webhook_allow_private,
        idempotency_ref=ref,
        public_base_url=settings.public_base_url,
    )
    if body.owner is not None and created.owner_invite_url is not None:
        # After the answer: a slow or refusing mail server neither delays nor fails the create
        # (the answer holds the link; a failure is logged).
        tasks.add_task(
            portal.send_link_url,
            settings,
            str(body.owner.email),
            body.owner.name,
            "owner",
            created.name,
            portal.INVITE,
            created.owner_invite_url,
        )
    return created


@router.patch(
    "/merchants/{merchant_id}",
    response_model=MerchantPublic,
    responses={
        404: {"description": "no such merchant"},
        422: {"description": "unknown plan, time zone or country; csm_agent_id not a csm"},
    },
)
async def update_merchant(
    merchant_id: str, body: MerchantUpdate, session: SessionDep
) -> MerchantPublic:
    return await merchants.update_merchant(session, merchant_id, body)


@router.post(
    "/merchants/{merchant_id}/rotate-key",
    response_model=ApiKeyRotated,
    responses={404: {"description": "no such merchant"}},
)
async def rotate_key(merchant_id: str, session: SessionDep, settings: SettingsDep) -> ApiKeyRotated:
    """A new API key, shown once; the old one keeps working until ``previous_valid_until``."""
    return await merchants.rotate_api_key(session, merchant_id, settings.key_rotation_overlap)


@router.post(
    "/merchants/{merchant_id}/rotate-webhook-secret",
    response_model=WebhookSecretRotated,
    responses={404: {"description": "no such merchant"}},
)
async def rotate_webhook_secret(
    merchant_id: str, session: SessionDep, settings: SettingsDep
) -> WebhookSecretRotated:
    """A new webhook secret, shown once; until ``previous_valid_until`` every webhook is signed
    with both (two ``v1=`` values in ``Printflow-Signature``)."""
    return await merchants.rotate_webhook_secret(
        session, merchant_id, settings.key_rotation_overlap
    )


@router.post("/agents", status_code=201, response_model=AgentCreated)
async def create_agent(
    body: AgentCreate, session: SessionDep, ref: IdempotencyRefDep
) -> AgentCreated:
    return await agents.create_agent(session, body, ref)


@router.get("/agents", response_model=AgentList)
async def list_agents(session: SessionDep) -> AgentList:
    return AgentList(data=await agents.list_agents(session))


@router.post(
    "/agents/{agent_id}/deactivate",
    response_model=AgentPublic,
    responses={404: {"description": "no such agent"}},
)
async def deactivate_agent(agent_id: str, session: SessionDep) -> AgentPublic:
    return await agents.deactivate_agent(session, agent_id)
