"""The catalog for merchants (``X-API-Key``): ``GET /v1/products``, ``GET
/v1/products/{product_uid}`` and ``GET /v1/shipping-methods?country=XX`` (docs/catalog.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import FacilitiesDep, MerchantDep, SettingsDep
from api.schemas import ProductPage, ProductPublic, ShippingMethodList
from api.services import catalog

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/products", response_model=ProductPage)
async def list_products(
    merchant: MerchantDep,
    settings: SettingsDep,
    kind: Annotated[
        str | None, Query(max_length=40, description="only products of this kind, e.g. mug")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> ProductPage:
    """The catalog's products by ``product_uid``, in pages; prices per currency as decimal
    strings."""
    data, next_cursor = catalog.list_products(
        catalog.catalog_of(settings), kind=kind, limit=limit, cursor=cursor
    )
    return ProductPage(data=data, next_cursor=next_cursor)


@router.get(
    "/products/{product_uid}",
    response_model=ProductPublic,
    responses={404: {"description": "product_not_found: not in the catalog"}},
)
async def get_product(
    product_uid: str, merchant: MerchantDep, settings: SettingsDep
) -> ProductPublic:
    return catalog.get_product(catalog.catalog_of(settings), product_uid)


@router.get("/shipping-methods", response_model=ShippingMethodList)
async def shipping_methods(
    merchant: MerchantDep,
    settings: SettingsDep,
    facilities: FacilitiesDep,
    country: Annotated[str, Query(max_length=8, description="ISO 3166-1 alpha-2, e.g. DE")],
) -> ShippingMethodList:
    """The shipping methods that reach ``country``, with their transit business days there
    and their prices (first item, each further item) per currency."""
    return ShippingMethodList(
        data=catalog.shipping_methods(catalog.catalog_of(settings), facilities, country)
    )
