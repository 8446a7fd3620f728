"""What the catalog endpoints do: products in pages, one product, the shipping methods that
reach a country (docs/catalog.md). Read from the catalog file loaded at start; no database."""

from __future__ import annotations

import base64
import json

from fastapi.exceptions import RequestValidationError

from api.errors import ApiError, NotFound
from api.schemas import (
    MethodPricePublic,
    PrintAreaPublic,
    ProductPublic,
    ShippingMethodPublic,
    TransitDays,
)
from domain.catalog import Catalog, Product, load_catalog
from domain.facilities import Facilities
from domain.merchants import country_named
from runtime.settings import Settings


class Unprocessable(ApiError):
    """A 422 in the error envelope with a code of its own (``unknown_product`` …)."""

    status_code = 422


def catalog_of(settings: Settings) -> Catalog:
    """The catalog of ``CATALOG_FILE``: read once per process (the start-up checks read it
    first, so a broken file never gets this far)."""
    return load_catalog(settings.catalog_file)


def product_public(product: Product) -> ProductPublic:
    return ProductPublic(
        product_uid=product.product_uid,
        name=product.name,
        kind=product.kind,
        print_areas=[PrintAreaPublic(**a.model_dump()) for a in product.print_areas],
        file_types=list(product.file_types),
        weight_g=product.weight_g,
        production_days=product.production_days,
        prices=dict(product.prices),
    )


def _encode(product_uid: str) -> str:
    raw = json.dumps(["product", product_uid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, product_uid = json.loads(raw)
    except (ValueError, TypeError) as err:
        raise ApiError("cursor is not one this API returned", code="invalid_cursor") from err
    if kind != "product" or not isinstance(product_uid, str):
        raise ApiError("cursor is not one this API returned", code="invalid_cursor")
    return product_uid


def list_products(
    catalog: Catalog, *, kind: str | None, limit: int, cursor: str | None
) -> tuple[list[ProductPublic], str | None]:
    """Products by ``product_uid``; the cursor is the last one a page showed, so a catalog
    that changes between pages neither skips nor repeats a product that stayed."""
    products = sorted(catalog, key=lambda p: p.product_uid)
    if kind is not None:
        products = [p for p in products if p.kind == kind]
    if cursor is not None:
        after = _decode(cursor)
        products = [p for p in products if p.product_uid > after]
    page = products[:limit]
    more = len(products) > limit
    return [product_public(p) for p in page], (_encode(page[-1].product_uid) if more else None)


def get_product(catalog: Catalog, product_uid: str) -> ProductPublic:
    product = catalog.product(product_uid)
    if product is None:
        raise NotFound(f"no product {product_uid!r} in the catalog", code="product_not_found")
    return product_public(product)


def shipping_methods(
    catalog: Catalog, facilities: Facilities, country: str
) -> list[ShippingMethodPublic]:
    """The methods that reach ``country`` and that a facility shipping there offers (a 422
    naming ``country`` when it is not an ISO 3166-1 alpha-2 code), in the catalog's order."""
    try:
        code = country_named(country)
    except ValueError as err:
        raise RequestValidationError(
            [{"loc": ("query", "country"), "msg": str(err), "type": "value_error"}]
        ) from None
    candidates = facilities.candidates(code)
    return [
        ShippingMethodPublic(
            id=method.id,
            name=method.name,
            tracked=method.tracked,
            country=code,
            transit_days=TransitDays(min=transit.min, max=transit.max),
            prices={
                currency: MethodPricePublic(
                    first_item=price.first_item, each_further_item=price.each_further_item
                )
                for currency, price in method.prices.items()
            },
        )
        for method, transit in catalog.methods_to(code)
        if any(facility.offers(method.id) for facility in candidates)
    ]
