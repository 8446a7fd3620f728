"""Reprints and their claims (``X-API-Key``): reorder a produced order, look claims up."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import FacilitiesDep, MerchantDep, SessionDep, SettingsDep, StarterDep
from api.schemas import ClaimPage, ClaimPublic, ReorderCreated, ReorderRequest
from api.services import claims

router = APIRouter(prefix="/v1", tags=["claims"])


@router.post(
    "/orders/{order_id}/reorder",
    status_code=201,
    response_model=ReorderCreated,
    responses={
        200: {"description": "the same reorder request again: the existing claim and reprint"},
        404: {"description": "no such order"},
        409: {"description": "order_not_produced: only printed, shipped, delivered or returned"},
        422: {"description": "photo_urls missing for damaged/defective, or unknown item ids"},
    },
)
async def reorder(
    order_id: str,
    body: ReorderRequest,
    response: Response,
    merchant: MerchantDep,
    session: SessionDep,
    starter: StarterDep,
    settings: SettingsDep,
    facilities: FacilitiesDep,
) -> ReorderCreated:
    result, created = await claims.reorder(
        session, starter, settings, facilities, merchant, order_id, body
    )
    if not created:
        response.status_code = 200
    return result


@router.get("/claims", response_model=ClaimPage)
async def list_claims(
    merchant: MerchantDep,
    session: SessionDep,
    order_id: Annotated[
        str | None, Query(description="the original or the reprint's order id")
    ] = None,
    order_reference_id: Annotated[
        str | None, Query(description="the original's or the reprint's order_reference_id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> ClaimPage:
    return await claims.list_claims(
        session,
        merchant,
        order_id=order_id,
        order_reference_id=order_reference_id,
        limit=limit,
        cursor=cursor,
    )


@router.get("/claims/{claim_id}", response_model=ClaimPublic)
async def get_claim(claim_id: str, merchant: MerchantDep, session: SessionDep) -> ClaimPublic:
    return await claims.get_claim(session, merchant, claim_id)
