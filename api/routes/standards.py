"""The merchant's standards (``X-API-Key``): ``GET /v1/support/standards``, how often they
answered their customers in time and how often their orders shipped by their promise."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import MerchantDep, SessionDep, SupportDep
from api.schemas import SupportStandards
from api.services import standards

router = APIRouter(prefix="/v1/support", tags=["support"])


@router.get("/standards", response_model=SupportStandards)
async def support_standards(
    merchant: MerchantDep, session: SessionDep, support: SupportDep
) -> SupportStandards:
    """Over the last 30 days: replies to customers in time (docs/customer-contacts.md) and
    orders shipped by their ship-by promise (docs/catalog.md)."""
    return await standards.standards(session, support, merchant)
