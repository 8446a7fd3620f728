"""Quotes for merchants (``X-API-Key``): ``POST /v1/quotes`` (docs/catalog.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import FacilitiesDep, MerchantDep, SessionDep, SettingsDep
from api.schemas import QuotePublic, QuoteRequest
from api.services import quotes

router = APIRouter(prefix="/v1/quotes", tags=["catalog"])

_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "unroutable_country: no facility serves the country"},
    422: {
        "description": "unknown_product (naming the items), unknown_shipping_method, "
        "not_shippable (what no facility has), or an invalid body"
    },
}


@router.post("", status_code=201, response_model=QuotePublic, responses=_REFUSALS)
async def create_quote(
    body: QuoteRequest,
    merchant: MerchantDep,
    session: SessionDep,
    settings: SettingsDep,
    facilities: FacilitiesDep,
) -> QuotePublic:
    """One quote per shipping method that can carry the items, cheapest first; pass the
    answer's ``id`` as an order's ``quote_id`` before ``expires_at`` to keep its prices."""
    return await quotes.create_quote(session, settings, facilities, merchant, body)
