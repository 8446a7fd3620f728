"""What ``POST /v1/quotes`` does, and the terms an order is created with (docs/catalog.md).

A quote is computed by ``domain.quotes`` and kept (``quotes`` table) with the prices of each
shipping method, so an order naming it (``quote_id``) before ``expires_at`` pays those prices
even if the catalog changed since. The facility, the cutoff and the ship-by promise are always
computed when the order comes: they depend on the moment, not on the quote.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import ApiError
from api.schemas import (
    DeliveryEstimatePublic,
    QuoteItem,
    QuoteOptionPublic,
    QuotePublic,
    QuoteRequest,
)
from api.services.catalog import Unprocessable, catalog_of
from db.engine import utcnow
from db.models import Merchant, Quote
from domain.catalog import CURRENCIES, Currency
from domain.facilities import Facilities, FacilitiesError, Facility
from domain.orders import OrderCreate, OrderState, OrderTerms, Price, ShipPromise
from domain.quotes import NotShippable, Option, UnknownProducts, UnknownShippingMethod, quote
from runtime.settings import Settings

DEFAULT_CURRENCY: Currency = "EUR"


def route(facilities: Facilities, country: str) -> Facility:
    """The facility that serves ``country`` by name (or the fallback); 400
    ``unroutable_country`` when none does."""
    try:
        return facilities.route(country)
    except FacilitiesError as err:
        raise ApiError(str(err), code="unroutable_country") from err


def options(
    settings: Settings,
    facilities: Facilities,
    country: str,
    items: list[tuple[str, int]],
    currency: Currency,
    now: datetime,
    *,
    method: str | None = None,
    item_names: list[str] | None = None,
) -> list[Option]:
    """``domain.quotes.quote`` with its refusals as the API's: 400 ``unroutable_country`` (no
    facility serves the country), 422 ``unknown_product`` (naming each item),
    ``unknown_shipping_method`` and ``not_shippable`` (saying what was missing)."""
    route(facilities, country)
    try:
        return quote(catalog_of(settings), facilities, country, items, currency, now, method)
    except UnknownProducts as err:
        named = [
            {
                "item": index,
                **({"item_reference_id": item_names[index]} if item_names else {}),
                "product_uid": uid,
            }
            for index, uid in err.items
        ]
        where = ", ".join(
            f"items[{d['item']}]"
            + (f" ({d['item_reference_id']})" if "item_reference_id" in d else "")
            + f": {d['product_uid']!r}"
            for d in named
        )
        raise Unprocessable(
            f"unknown product_uid, not in the catalog (GET /v1/products): {where}",
            code="unknown_product",
            details=named,
        ) from None
    except UnknownShippingMethod as err:
        raise Unprocessable(str(err), code="unknown_shipping_method") from None
    except NotShippable as err:
        raise Unprocessable(
            str(err),
            code="not_shippable",
            details={"country": err.country, "missing": err.missing},
        ) from None


def readdressed(
    settings: Settings, facilities: Facilities, state: OrderState, country: str, now: datetime
) -> tuple[Facility, ShipPromise | None]:
    """Where an order goes once its address is in ``country``, and its ship-by promise from
    there: the first facility for the country that makes every item and offers the order's
    shipping method (422 ``not_shippable`` when none does). Orders older than the catalog
    route by the country alone and keep no promise."""
    if state.shipping_method is None:
        return route(facilities, country), None
    currency = state.price.currency if state.price is not None else DEFAULT_CURRENCY
    best = options(
        settings,
        facilities,
        country,
        [(i.product_uid, i.quantity) for i in state.items],
        currency if currency in CURRENCIES else DEFAULT_CURRENCY,  # type: ignore[arg-type]
        now,
        method=state.shipping_method,
        item_names=[i.item_reference_id for i in state.items],
    )[0]
    return best.facility, best.promise


def _option_public(option: Option) -> QuoteOptionPublic:
    return QuoteOptionPublic(
        shipping_method=option.method.id,
        shipping_method_name=option.method.name,
        tracked=option.method.tracked,
        facility=option.facility.id,
        currency=option.currency,
        items_total=option.items_total,
        shipping=option.shipping,
        total=option.total,
        cutoff_at=option.cutoff_at,
        ships_by=option.ships_by,
        delivery_estimate=DeliveryEstimatePublic(
            earliest=option.delivery_estimate.earliest, latest=option.delivery_estimate.latest
        ),
    )


async def create_quote(
    session: AsyncSession,
    settings: Settings,
    facilities: Facilities,
    merchant: Merchant,
    body: QuoteRequest,
) -> QuotePublic:
    """Computes and keeps a quote; its prices hold until ``expires_at``."""
    now = utcnow()
    country = body.shipping_address.country
    items = [(i.product_uid, i.quantity) for i in body.items]
    found = options(settings, facilities, country, items, body.currency, now)
    valid = timedelta(minutes=catalog_of(settings).quote_valid_minutes)
    row = Quote(
        id="quo_" + uuid.uuid4().hex,
        merchant_id=merchant.id,
        country=country,
        currency=body.currency,
        items=[{"product_uid": uid, "quantity": quantity} for uid, quantity in items],
        options=[
            {
                "shipping_method": o.method.id,
                "facility": o.facility.id,
                "items_total": str(o.items_total),
                "shipping": str(o.shipping),
                "total": str(o.total),
            }
            for o in found
        ],
        created_at=now,
        expires_at=now + valid,
    )
    session.add(row)
    await session.commit()
    return QuotePublic(
        id=row.id,
        expires_at=row.expires_at,
        country=country,
        currency=body.currency,
        items=[QuoteItem(product_uid=uid, quantity=quantity) for uid, quantity in items],
        quotes=[_option_public(o) for o in found],
    )


def _price(option: Option) -> Price:
    return Price(
        currency=option.currency,
        items_total=option.items_total,
        shipping=option.shipping,
        total=option.total,
    )


def _terms(option: Option, price: Price, quote_id: str | None = None) -> OrderTerms:
    return OrderTerms(
        shipping_method=option.method.id,
        price=price,
        ships_by=option.ships_by,
        delivery_estimate=option.delivery_estimate,
        promise=option.promise,
        quote_id=quote_id,
        watch_ships_by=True,
    )


async def order_terms(
    session: AsyncSession,
    settings: Settings,
    facilities: Facilities,
    merchant: Merchant,
    body: OrderCreate,
    now: datetime,
) -> tuple[Facility, OrderTerms]:
    """The facility that makes and ships the order, and its terms: the chosen shipping method
    (or the cheapest), its price (the quote's, with ``quote_id``) and the ship-by promise from
    the facility's next cutoff."""
    country = body.shipping_address.country
    items = [(i.product_uid, i.quantity) for i in body.items]
    names = [i.item_reference_id for i in body.items]
    if body.quote_id is not None:
        return await _quoted(session, settings, facilities, merchant, body, now, items, names)
    currency = body.currency or DEFAULT_CURRENCY
    found = options(
        settings,
        facilities,
        country,
        items,
        currency,
        now,
        method=body.shipping_method,
        item_names=names,
    )
    best = found[0]
    return best.facility, _terms(best, _price(best))


async def _quoted(
    session: AsyncSession,
    settings: Settings,
    facilities: Facilities,
    merchant: Merchant,
    body: OrderCreate,
    now: datetime,
    items: list[tuple[str, int]],
    names: list[str],
) -> tuple[Facility, OrderTerms]:
    """The terms of an order that names a quote: the quote's price for the method chosen (or
    the cheapest of the quote's methods that still ships), if the order is what was quoted."""
    assert body.quote_id is not None
    row = await session.get(Quote, body.quote_id)
    if row is None or row.merchant_id != merchant.id:
        raise Unprocessable(f"no quote {body.quote_id!r}", code="unknown_quote")
    if now >= row.expires_at:
        raise Unprocessable(
            f"quote {row.id} expired at {row.expires_at.isoformat()}; ask for a new one, or "
            "leave quote_id out to pay today's prices",
            code="quote_expired",
            details={"expires_at": row.expires_at.isoformat()},
        )
    differences = _differences(row, body, items)
    if differences:
        raise Unprocessable(
            f"the order is not what quote {row.id} was for: {'; '.join(differences)}",
            code="quote_mismatch",
            details=differences,
        )
    currency = row.currency if row.currency in CURRENCIES else DEFAULT_CURRENCY
    quoted: dict[str, dict[str, Any]] = {o["shipping_method"]: o for o in row.options}
    if body.shipping_method is not None and body.shipping_method not in quoted:
        raise Unprocessable(
            f"quote {row.id} has no price for shipping method {body.shipping_method!r}; it has "
            f"{', '.join(quoted)}",
            code="quote_mismatch",
        )
    found = options(
        settings,
        facilities,
        body.shipping_address.country,
        items,
        currency,  # type: ignore[arg-type]
        now,
        method=body.shipping_method,
        item_names=names,
    )
    # The quote's order of methods is cheapest first: the first that still ships.
    by_method = {o.method.id: o for o in found}
    for method_id, held in quoted.items():
        option = by_method.get(method_id)
        if option is None:
            continue
        price = Price(
            currency=row.currency,
            items_total=Decimal(held["items_total"]),
            shipping=Decimal(held["shipping"]),
            total=Decimal(held["total"]),
        )
        return option.facility, _terms(option, price, quote_id=row.id)
    raise Unprocessable(
        f"none of the shipping methods of quote {row.id} ships this order now",
        code="not_shippable",
        details={"country": body.shipping_address.country, "quoted": list(quoted)},
    )


def _differences(row: Quote, body: OrderCreate, items: list[tuple[str, int]]) -> list[str]:
    found = []
    if body.shipping_address.country != row.country:
        found.append(f"it ships to {body.shipping_address.country}, the quote to {row.country}")
    if body.currency is not None and body.currency != row.currency:
        found.append(f"its currency is {body.currency}, the quote's {row.currency}")
    ordered: Counter[str] = Counter()
    for uid, quantity in items:
        ordered[uid] += quantity
    quoted: Counter[str] = Counter()
    for item in row.items:
        quoted[str(item["product_uid"])] += int(item["quantity"])
    if ordered != quoted:
        found.append(f"its items are {_pieces(ordered)}, the quote's {_pieces(quoted)}")
    return found


def _pieces(counts: Counter[str]) -> str:
    return ", ".join(f"{quantity} x {uid}" for uid, quantity in sorted(counts.items()))
