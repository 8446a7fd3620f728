"""What a merchant's support plan includes (docs/support.md, "Plans"), and their CSM if they
have one."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from api.schemas import CsmPublic, SupportPlan
from db.models import Agent, Merchant
from domain.support import INCLUDES, plan_named


async def support_plan(session: AsyncSession, merchant: Merchant) -> SupportPlan:
    plan = plan_named(merchant.plan)
    includes = INCLUDES[plan]
    csm = None
    if includes.csm and merchant.csm_agent_id is not None:
        agent = await session.get(Agent, merchant.csm_agent_id)
        if agent is not None and agent.active and agent.role == "csm":
            csm = CsmPublic(name=agent.name, email=agent.email)
    return SupportPlan(plan=plan, includes=includes, csm=csm)
