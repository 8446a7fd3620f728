"""Operators' API: merchants (created, their support plan changed) and the support team's
agents. Guarded by ``X-Admin-Token``."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminDep, SessionDep, SettingsDep
from api.schemas import (
    AgentCreate,
    AgentCreated,
    AgentList,
    AgentPublic,
    MerchantCreate,
    MerchantCreated,
    MerchantPublic,
    MerchantUpdate,
)
from api.services import agents, merchants

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep])


@router.post(
    "/merchants",
    status_code=201,
    response_model=MerchantCreated,
    responses={
        422: {
            "description": "unknown plan, time zone or country, a webhook_url that is not a "
            "public https address, or a bad field"
        }
    },
)
async def create_merchant(
    body: MerchantCreate, session: SessionDep, settings: SettingsDep
) -> MerchantCreated:
    return await merchants.create_merchant(
        session, body, allow_private_webhooks=settings.webhook_allow_private
    )


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


@router.post("/agents", status_code=201, response_model=AgentCreated)
async def create_agent(body: AgentCreate, session: SessionDep) -> AgentCreated:
    return await agents.create_agent(session, body)


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
