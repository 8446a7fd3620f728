"""The platform's support team: agents and customer success managers (role ``csm``), each with
a token for ``X-Agent-Token`` that is shown once and kept as its sha256."""

from __future__ import annotations

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import NotFound
from api.idempotency import WITHHELD
from api.schemas import AgentCreate, AgentCreated, AgentPublic
from api.services.credentials import hash_credential, new_credential
from db.engine import utcnow
from db.models import Agent

TOKEN_PREFIX = "pfagt_"


def public(agent: Agent) -> AgentPublic:
    return AgentPublic.model_validate(agent, from_attributes=True)


async def create_agent(
    session: AsyncSession, body: AgentCreate, idempotency_ref: str | None = None
) -> AgentCreated:
    """A new agent and their token, shown once. A create that runs again with the same
    Idempotency-Key answers the agent the first run made, the token withheld."""
    if idempotency_ref is not None:
        made = (
            await session.exec(select(Agent).where(Agent.idempotency_ref == idempotency_ref))
        ).first()
        if made is not None:
            return AgentCreated(**public(made).model_dump(), token=WITHHELD)
    token = new_credential(TOKEN_PREFIX)
    agent = Agent(
        id="agt_" + uuid.uuid4().hex,
        name=body.name,
        email=str(body.email),
        role=body.role,
        token_hash=hash_credential(token),
        token_prefix=token[:12],
        created_at=utcnow(),
        active=True,
        idempotency_ref=idempotency_ref,
    )
    session.add(agent)
    await session.commit()
    return AgentCreated(**public(agent).model_dump(), token=token)


async def list_agents(session: AsyncSession) -> list[AgentPublic]:
    rows = await session.exec(select(Agent).order_by(col(Agent.created_at), col(Agent.id)))
    return [public(agent) for agent in rows.all()]


async def deactivate_agent(session: AsyncSession, agent_id: str) -> AgentPublic:
    """Their token stops working at once; a merchant whose CSM they were shows none."""
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"no agent {agent_id}")
    agent.active = False
    session.add(agent)
    await session.commit()
    return public(agent)
