"""Quotes: what an order will cost, how it can ship, and when it will leave the facility.

For a destination country, items (``product_uid``, quantity) and a currency, ``quote`` gives one
``Option`` per shipping method that can carry the order, cheapest first (then by method id):

- the facility: the first of the country's facilities (the one serving it by name, then the
  fallback) that makes every item and offers the method;
- ``items_total``: each product's price times its quantity; ``shipping``: the method's
  ``first_item`` plus ``each_further_item`` for every further piece; ``total``: their sum.
  Exact decimals, two places;
- ``cutoff_at``: the facility's next cutoff after ``now`` (``domain.schedule.next_cutoff``);
- ``ships_by``: the cutoff plus the longest production time of the items, in the facility's
  business days (Monday to Friday in its time zone, not its country's public holidays, counted
  as whole days from the cutoff: ``promise_dates``);
- ``delivery_estimate``: ``ships_by`` plus the method's transit business days (min, max), as the
  facility's local dates.

When the order is not shipped by ``ships_by`` it is late, and ``late_estimate`` is what it can
still promise: shipped by the end of the next business day.

``promise_dates`` needs no catalog and no holiday lookup (the holidays are written out in the
``ShipPromise``), so a workflow can move the promise when its cutoff moves.

Pure: the caller passes ``now``; the only lookups are the ``holidays`` package's tables.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import holidays

from domain.business_time import Calendar, add
from domain.catalog import CENT, Catalog, CatalogError, Currency, Product, ShippingMethod, Transit
from domain.facilities import Facilities, Facility
from domain.orders import DeliveryEstimate, ShipPromise
from domain.schedule import next_cutoff

__all__ = [
    "NotShippable",
    "Option",
    "UnknownProducts",
    "UnknownShippingMethod",
    "check_offers",
    "closed_dates",
    "delivery_window",
    "late_estimate",
    "promise_dates",
    "quote",
]

_WEEKDAYS = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
_JUST_BEFORE = timedelta(microseconds=1)
# Public holidays written into a promise: the order's year and the next (a promise is days
# to weeks long; a year-end order still finds January's holidays).
HOLIDAY_YEARS = 2
# A late order's new estimate: it ships by the end of the next business day.
LATE_SHIP_DAYS = 1


class UnknownProducts(ValueError):
    """Items whose ``product_uid`` the catalog does not have: ``(index, product_uid)``."""

    def __init__(self, items: list[tuple[int, str]]) -> None:
        self.items = items
        named = ", ".join(f"items[{index}] {uid!r}" for index, uid in items)
        super().__init__(f"not in the catalog: {named}")


class UnknownShippingMethod(ValueError):
    def __init__(self, method: str, known: list[str]) -> None:
        self.method = method
        super().__init__(f"no shipping method {method!r}; the catalog has {', '.join(known)}")


class NotShippable(ValueError):
    """No facility that ships to the country makes every item with a method that reaches it;
    ``missing`` says, per facility considered, what it lacks."""

    def __init__(self, message: str, country: str, missing: list[dict[str, object]]) -> None:
        self.country = country
        self.missing = missing
        super().__init__(message)


@dataclass(frozen=True)
class Option:
    """One way to make and ship the order: a quote's line, or an order's terms."""

    method: ShippingMethod
    transit: Transit
    facility: Facility
    currency: Currency
    items_total: Decimal
    shipping: Decimal
    cutoff_at: datetime
    ships_by: datetime
    delivery_estimate: DeliveryEstimate
    promise: ShipPromise

    @property
    def total(self) -> Decimal:
        return (self.items_total + self.shipping).quantize(CENT)


def closed_dates(facility: Facility, start: date, years: int = HOLIDAY_YEARS) -> list[date]:
    """The facility's public holidays from ``start`` on, for ``years`` calendar years."""
    if facility.holidays_country is None:
        return []
    found: set[date] = set()
    for year in range(start.year, start.year + years):
        found |= _public_holidays(facility.holidays_country, year)
    return sorted(day for day in found if day >= start)


@functools.lru_cache(maxsize=256)
def _public_holidays(country: str, year: int) -> frozenset[date]:
    """A country's public holidays in a year: the same for the life of the process (the
    package's tables), and a few milliseconds to build, so every quote does not pay them."""
    return frozenset(holidays.country_holidays(country, years=year))


def _calendar(timezone: str, closed: Iterable[date]) -> Calendar:
    return Calendar(timezone=timezone, hours=_WEEKDAYS, closed_dates=frozenset(closed))


def _local_day(calendar: Calendar, start: datetime, days: int) -> date:
    """The local date by whose end ``days`` business days after ``start`` have passed."""
    end = add(calendar, start, timedelta(days=days))
    return (end - _JUST_BEFORE).astimezone(ZoneInfo(calendar.timezone)).date()


def promise_dates(
    timezone: str, promise: ShipPromise, cutoff: datetime
) -> tuple[datetime, DeliveryEstimate]:
    """``ships_by`` and the delivery window for files that go to production at ``cutoff``.

    Business days are whole days, Monday to Friday in ``timezone``, except the promise's
    ``closed_dates``: a cutoff on Friday at 00:00 with 2 production days ships by Monday's end
    (Tuesday 00:00), by Tuesday's end when Monday is a holiday. A cutoff on a closed day counts
    from the next business day. The window's dates are the local days by whose end the
    transit's min and max business days have passed.
    """
    ships_by = _ships_by(timezone, tuple(promise.closed_dates), cutoff, promise.production_days)
    return ships_by, delivery_window(timezone, promise, ships_by)


def delivery_window(timezone: str, promise: ShipPromise, ships_by: datetime) -> DeliveryEstimate:
    """The delivery window of a parcel that leaves the facility by ``ships_by``."""
    earliest, latest = _window(
        timezone,
        tuple(promise.closed_dates),
        ships_by,
        promise.transit_min_days,
        promise.transit_max_days,
    )
    return DeliveryEstimate(earliest=earliest, latest=latest)


def late_estimate(
    timezone: str, promise: ShipPromise, now: datetime
) -> tuple[datetime, DeliveryEstimate]:
    """What a late order can still promise at ``now``: to ship by the end of the next business
    day (``LATE_SHIP_DAYS``), and the delivery window from then."""
    return promise_dates(
        timezone, promise.model_copy(update={"production_days": LATE_SHIP_DAYS}), now
    )


# The business-day arithmetic, remembered: every order and quote for a facility asks the same
# until its next cutoff, and computing it was about 80 % of a quote's CPU. Plain, immutable
# values, so no caller can change what the next one gets.
@functools.lru_cache(maxsize=1024)
def _ships_by(timezone: str, closed: tuple[date, ...], cutoff: datetime, days: int) -> datetime:
    return add(_calendar(timezone, closed), cutoff, timedelta(days=days))


@functools.lru_cache(maxsize=1024)
def _window(
    timezone: str, closed: tuple[date, ...], ships_by: datetime, min_days: int, max_days: int
) -> tuple[date, date]:
    calendar = _calendar(timezone, closed)
    return _local_day(calendar, ships_by, min_days), _local_day(calendar, ships_by, max_days)


def _products(catalog: Catalog, items: list[tuple[str, int]]) -> list[Product]:
    unknown = [(index, uid) for index, (uid, _) in enumerate(items) if uid not in catalog]
    if unknown:
        raise UnknownProducts(unknown)
    return [p for p in (catalog.product(uid) for uid, _ in items) if p is not None]


def quote(
    catalog: Catalog,
    facilities: Facilities,
    country: str,
    items: list[tuple[str, int]],
    currency: Currency,
    now: datetime,
    method: str | None = None,
) -> list[Option]:
    """Every way to make and ship ``items`` to ``country`` (only ``method``, when given),
    cheapest first; ``UnknownProducts``, ``UnknownShippingMethod`` or ``NotShippable`` when
    there is none."""
    products = _products(catalog, items)
    if method is not None and catalog.method(method) is None:
        raise UnknownShippingMethod(method, [m.id for m in catalog.methods])
    code = country.strip().upper()
    candidates = facilities.candidates(code)
    reaching = [(m, transit) for m, transit in catalog.methods_to(code) if method in (None, m.id)]
    uids = list(dict.fromkeys(p.product_uid for p in products))
    if not candidates:
        raise NotShippable(f"no facility ships to {code}", code, [])
    if not reaching:
        message = (
            f"shipping method {method!r} does not reach {code}"
            if method
            else f"no shipping method reaches {code}"
        )
        raise NotShippable(message, code, [{"shipping_method": method, "reaches": False}])
    items_total = sum(
        (p.prices[currency] * quantity for p, (_, quantity) in zip(products, items, strict=True)),
        Decimal("0.00"),
    ).quantize(CENT)
    pieces = sum(quantity for _, quantity in items)
    production_days = max(p.production_days for p in products)
    options: list[Option] = []
    for shipping_method, transit in reaching:
        facility = next(
            (
                f
                for f in candidates
                if f.offers(shipping_method.id) and all(f.makes(uid) for uid in uids)
            ),
            None,
        )
        if facility is None:
            continue
        cutoff = next_cutoff(facility.schedule, facility.timezone, now)
        promise = ShipPromise(
            production_days=production_days,
            transit_min_days=transit.min,
            transit_max_days=transit.max,
            closed_dates=closed_dates(
                facility, cutoff.astimezone(ZoneInfo(facility.timezone)).date()
            ),
        )
        ships_by, window = promise_dates(facility.timezone, promise, cutoff)
        options.append(
            Option(
                method=shipping_method,
                transit=transit,
                facility=facility,
                currency=currency,
                items_total=items_total,
                shipping=shipping_method.prices[currency].for_quantity(pieces),
                cutoff_at=cutoff,
                ships_by=ships_by,
                delivery_estimate=window,
                promise=promise,
            )
        )
    if not options:
        raise _not_shippable(code, candidates, uids, [m for m, _ in reaching])
    return sorted(options, key=lambda o: (o.total, o.method.id))


def _not_shippable(
    country: str, candidates: list[Facility], uids: list[str], methods: list[ShippingMethod]
) -> NotShippable:
    missing: list[dict[str, object]] = []
    parts = []
    for facility in candidates:
        products = [uid for uid in uids if not facility.makes(uid)]
        offered = [m.id for m in methods if facility.offers(m.id)]
        missing.append(
            {
                "facility": facility.id,
                "missing_products": products,
                "missing_shipping_methods": [] if offered else [m.id for m in methods],
            }
        )
        lacks = []
        if products:
            lacks.append(f"does not make {', '.join(products)}")
        if not offered:
            lacks.append(f"does not offer {' or '.join(m.id for m in methods)}")
        parts.append(f"facility {facility.id!r} {' and '.join(lacks)}")
    return NotShippable(
        f"no facility ships this order to {country}: {'; '.join(parts)}", country, missing
    )


def check_offers(catalog: Catalog, facilities: Facilities) -> None:
    """A facilities file fits the catalog: every product and method a facility names exists,
    and its ``holidays_country`` has known public holidays; ``CatalogError`` names the fault."""
    supported = holidays.list_supported_countries()
    for facility in facilities:
        where = f"facility {facility.id!r}"
        for uid in facility.products or []:
            if uid not in catalog:
                raise CatalogError(f"{where}: products: {uid!r} is not in the catalog")
        for method_id in facility.shipping_methods or []:
            if catalog.method(method_id) is None:
                raise CatalogError(
                    f"{where}: shipping_methods: {method_id!r} is not in the catalog "
                    f"({', '.join(m.id for m in catalog.methods)})"
                )
        if facility.holidays_country and facility.holidays_country not in supported:
            raise CatalogError(
                f"{where}: holidays_country: no public holidays known for "
                f"{facility.holidays_country!r}"
            )
