"""The merchant's support plan (``X-API-Key``): ``GET /v1/support/plan``."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import MerchantDep, SessionDep
from api.schemas import SupportPlan
from api.services import plans

router = APIRouter(prefix="/v1/support", tags=["support"])


@router.get("/plan", response_model=SupportPlan, response_model_exclude_none=True)
async def support_plan(merchant: MerchantDep, session: SessionDep) -> SupportPlan:
    """The plan, what it includes, and the dedicated CSM (``{name, email}``) when the plan
    includes one and one is assigned."""
    return await plans.support_plan(session, merchant)
