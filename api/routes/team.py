"""The support team's own view of itself (``X-Agent-Token``): ``GET /v1/agent/me``."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AgentDep
from api.schemas import AgentPublic
from api.services import agents

router = APIRouter(prefix="/v1/agent", tags=["support team"])


@router.get("/me", response_model=AgentPublic, responses={401: {"description": "no valid token"}})
async def me(agent: AgentDep) -> AgentPublic:
    """Who the token belongs to: a check that it works, for the console and for scripts."""
    return agents.public(agent)
