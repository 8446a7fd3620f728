"""Quotes: exact prices, cheapest first, the facility that makes the items, and the ship-by
promise in the facility's business days (weekends, its public holidays, peak-season cutoffs)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from domain.catalog import Catalog, load_catalog
from domain.facilities import Facilities, Facility
from domain.orders import ShipPromise
from domain.quotes import (
    NotShippable,
    UnknownProducts,
    UnknownShippingMethod,
    late_estimate,
    promise_dates,
    quote,
)
from runtime.settings import BUNDLED_CATALOG

BERLIN = ZoneInfo("Europe/Berlin")
CATALOG = load_catalog(BUNDLED_CATALOG)


def _facility(**extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "berlin",
        "name": "Berlin",
        "timezone": "Europe/Berlin",
        "holidays_country": "DE",
        "countries": ["DE", "AT"],
        "api_url": "http://127.0.0.1:8100",
        "api_token": "tok-berlin",
        "schedule": {"daily": ["00:00"], "peak_daily": ["00:00", "12:00"]},
    }
    entry.update(extra)
    return entry


def _registry(*entries: dict[str, Any]) -> Facilities:
    return Facilities([Facility.model_validate(e) for e in entries])


FALLBACK = _facility(
    id="singapore",
    name="Singapore",
    timezone="Asia/Singapore",
    holidays_country="SG",
    countries=["*"],
    api_token="tok-sg",
)


def _at(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_one_quote_per_method_cheapest_first_with_exact_totals_in_every_currency() -> None:
    registry = _registry(_facility(), FALLBACK)
    items = [("mug_11oz_white", 2), ("poster_a3_matte", 3)]
    expected = {
        # 2 x mug + 3 x poster; shipping: first item + 4 further
        "EUR": ("42.30", {"standard": "10.95", "tracked": "15.95", "express": "26.95"}),
        "USD": ("46.55", {"standard": "12.49", "tracked": "17.99", "express": "30.99"}),
        "GBP": ("36.50", {"standard": "9.45", "tracked": "13.95", "express": "22.95"}),
    }
    for currency, (items_total, shipping) in expected.items():
        found = quote(CATALOG, registry, "DE", items, currency, _at(2025, 6, 2, 9))  # type: ignore[arg-type]
        assert [o.method.id for o in found] == ["standard", "tracked", "express"]
        for option in found:
            assert option.currency == currency and option.facility.id == "berlin"
            assert str(option.items_total) == items_total
            assert str(option.shipping) == shipping[option.method.id]
            assert option.total == Decimal(items_total) + Decimal(shipping[option.method.id])
            assert str(option.total) == str(option.total.quantize(Decimal("0.01")))


def test_amounts_that_floats_cannot_hold_add_up_exactly(tmp_path: Path) -> None:
    data = json.loads(BUNDLED_CATALOG.read_text())
    data["products"][0]["prices"] = {"EUR": "0.10", "USD": "0.20", "GBP": "0.70"}
    data["shipping_methods"][0]["prices"]["EUR"] = {
        "first_item": "0.10",
        "each_further_item": "0.20",
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    catalog = Catalog.load(path)
    registry = _registry(_facility(), FALLBACK)
    found = quote(catalog, registry, "DE", [("mug_11oz_white", 3)], "EUR", _at(2025, 6, 2, 9))
    standard = next(o for o in found if o.method.id == "standard")
    assert 0.1 * 3 != 0.3  # what a float would have said
    assert (str(standard.items_total), str(standard.shipping), str(standard.total)) == (
        "0.30",
        "0.50",
        "0.80",
    )
    gbp = quote(catalog, registry, "DE", [("mug_11oz_white", 3)], "GBP", _at(2025, 6, 2, 9))
    assert str(gbp[0].items_total) == "2.10"


def test_a_quote_on_a_friday_afternoon_before_a_public_holiday() -> None:
    """Friday 6 June 2025, 15:00 in Berlin; Monday 9 June is Whit Monday in Germany. The next
    cutoff is Saturday 00:00; the mug's 2 production days are Tuesday and Wednesday, so it ships
    by Wednesday's end; standard's 2 to 5 transit days to Germany end on Friday and the next
    Wednesday."""
    registry = _registry(_facility(), FALLBACK)
    now = _at(2025, 6, 6, 15)
    found = quote(CATALOG, registry, "DE", [("mug_11oz_white", 1)], "EUR", now)
    standard = next(o for o in found if o.method.id == "standard")
    assert standard.cutoff_at == _at(2025, 6, 7, 0)
    assert standard.ships_by == _at(2025, 6, 12, 0)
    assert standard.delivery_estimate.earliest == date(2025, 6, 13)
    assert standard.delivery_estimate.latest == date(2025, 6, 18)
    assert date(2025, 6, 9) in standard.promise.closed_dates

    # The Friday after, with no holiday on Monday: a day sooner.
    later = quote(CATALOG, registry, "DE", [("mug_11oz_white", 1)], "EUR", _at(2025, 6, 13, 15))
    assert later[0].ships_by == _at(2025, 6, 18, 0)

    # The same facility without its holidays works on Whit Monday.
    plain = _registry(_facility(holidays_country=None), FALLBACK)
    found = quote(CATALOG, plain, "DE", [("mug_11oz_white", 1)], "EUR", now)
    assert found[0].ships_by == _at(2025, 6, 11, 0)


def test_peak_season_has_two_cutoffs_a_day() -> None:
    """October to December the facility cuts off at 00:00 and 12:00: a Tuesday-morning quote
    makes noon's batch and ships two business days after it, at noon; in September the same
    quote waits for midnight."""
    registry = _registry(_facility(), FALLBACK)
    items = [("mug_11oz_white", 1)]
    morning = quote(CATALOG, registry, "DE", items, "EUR", _at(2025, 11, 4, 9))[0]
    assert morning.cutoff_at == _at(2025, 11, 4, 12)
    assert morning.ships_by == _at(2025, 11, 6, 12)
    assert morning.delivery_estimate.earliest == date(2025, 11, 10)  # Thu noon + Fri + Mon

    afternoon = quote(CATALOG, registry, "DE", items, "EUR", _at(2025, 11, 4, 13))[0]
    assert afternoon.cutoff_at == _at(2025, 11, 5, 0)
    assert afternoon.ships_by == _at(2025, 11, 7, 0)

    september = quote(CATALOG, registry, "DE", items, "EUR", _at(2025, 9, 2, 9))[0]
    assert september.cutoff_at == _at(2025, 9, 3, 0)

    # Christmas in peak season: Friday 12:00 cutoff, 25 and 26 December are holidays.
    christmas = quote(CATALOG, registry, "DE", items, "EUR", _at(2025, 12, 19, 9))[0]
    assert christmas.cutoff_at == _at(2025, 12, 19, 12)
    assert christmas.ships_by == _at(2025, 12, 23, 12)
    canvas = quote(CATALOG, registry, "DE", [("canvas_30x40", 1)], "EUR", _at(2025, 12, 19, 9))
    assert canvas[0].ships_by == _at(2025, 12, 24, 12)  # Fri noon to Mon, Tue, Wed noon
    # Two transit days from Wednesday noon: Christmas, Boxing Day and the weekend pass first.
    assert canvas[0].delivery_estimate.earliest == date(2025, 12, 30)


def test_the_longest_production_time_of_the_items_counts() -> None:
    registry = _registry(_facility(), FALLBACK)
    now = _at(2025, 6, 2, 9)  # Monday; cutoff Tuesday 00:00
    card = quote(CATALOG, registry, "DE", [("greeting_card_a6", 1)], "EUR", now)[0]
    both = quote(
        CATALOG, registry, "DE", [("greeting_card_a6", 1), ("canvas_30x40", 1)], "EUR", now
    )[0]
    assert card.ships_by == _at(2025, 6, 4, 0)
    assert both.ships_by == _at(2025, 6, 6, 0)


def test_unknown_products_are_named_by_their_place() -> None:
    registry = _registry(_facility(), FALLBACK)
    with pytest.raises(UnknownProducts) as caught:
        quote(
            CATALOG,
            registry,
            "DE",
            [("mug_11oz_white", 1), ("mug_15oz", 1), ("poster_a0", 2)],
            "EUR",
            _at(2025, 6, 2, 9),
        )
    assert caught.value.items == [(1, "mug_15oz"), (2, "poster_a0")]
    assert "items[1] 'mug_15oz'" in str(caught.value)
    with pytest.raises(UnknownShippingMethod, match="no shipping method 'drone'"):
        quote(CATALOG, registry, "DE", [("mug_11oz_white", 1)], "EUR", _at(2025, 6, 2, 9), "drone")


def test_the_fallback_prints_what_the_countrys_facility_does_not_make() -> None:
    registry = _registry(_facility(products=["mug_11oz_white", "poster_a3_matte"]), FALLBACK)
    now = _at(2025, 6, 2, 9)
    assert quote(CATALOG, registry, "DE", [("mug_11oz_white", 1)], "EUR", now)[0].facility.id == (
        "berlin"
    )
    canvas = quote(CATALOG, registry, "DE", [("canvas_30x40", 1)], "EUR", now)
    assert {o.facility.id for o in canvas} == {"singapore"}
    assert canvas[0].facility.timezone == "Asia/Singapore"


def test_what_nothing_can_ship_says_what_was_missing() -> None:
    only_berlin = _registry(
        _facility(countries=["*"], products=["mug_11oz_white"], shipping_methods=["standard"])
    )
    now = _at(2025, 6, 2, 9)
    with pytest.raises(NotShippable) as caught:
        quote(CATALOG, only_berlin, "ZA", [("canvas_30x40", 1)], "EUR", now)
    assert "facility 'berlin' does not make canvas_30x40" in str(caught.value)
    assert caught.value.missing == [
        {"facility": "berlin", "missing_products": ["canvas_30x40"], "missing_shipping_methods": []}
    ]
    # Express does not go to South Africa at all.
    with pytest.raises(NotShippable, match="shipping method 'express' does not reach ZA"):
        quote(CATALOG, only_berlin, "ZA", [("mug_11oz_white", 1)], "EUR", now, "express")
    # Germany is reached by express, but Berlin does not offer it.
    with pytest.raises(NotShippable, match="facility 'berlin' does not offer express"):
        quote(CATALOG, only_berlin, "DE", [("mug_11oz_white", 1)], "EUR", now, "express")
    # Without express, South Africa still gets the standard method.
    assert [
        o.method.id for o in quote(CATALOG, only_berlin, "ZA", [("mug_11oz_white", 1)], "EUR", now)
    ] == ["standard"]


def test_a_country_no_method_reaches_is_not_shippable(tmp_path: Path) -> None:
    data = copy.deepcopy(json.loads(BUNDLED_CATALOG.read_text()))
    for method in data["shipping_methods"]:
        method["transit_days"].pop("*", None)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NotShippable, match="no shipping method reaches ZA"):
        quote(
            Catalog.load(path),
            _registry(_facility(), FALLBACK),
            "ZA",
            [("mug_11oz_white", 1)],
            "EUR",
            _at(2025, 6, 2, 9),
        )


def test_the_promise_moves_with_the_cutoff_without_the_catalog() -> None:
    """What a workflow can do when personalization or a hold moves its cutoff."""
    promise = ShipPromise(
        production_days=2,
        transit_min_days=1,
        transit_max_days=3,
        closed_dates=[date(2025, 12, 25), date(2025, 12, 26)],
    )
    ships_by, window = promise_dates("Europe/Berlin", promise, _at(2025, 12, 24, 0))
    assert ships_by == _at(2025, 12, 30, 0)  # Wed, (Thu, Fri holidays), Mon
    assert (window.earliest, window.latest) == (date(2025, 12, 30), date(2026, 1, 1))
    # Zero production days: it ships by the cutoff itself.
    same = promise.model_copy(update={"production_days": 0})
    assert promise_dates("UTC", same, datetime(2025, 6, 2, 12, tzinfo=UTC))[0] == datetime(
        2025, 6, 2, 12, tzinfo=UTC
    )


def test_remembered_promise_dates_are_each_callers_own() -> None:
    """The dates are remembered per facility and cutoff: a caller that changes its estimate
    changes nobody else's, and another holiday list is another answer."""
    promise = ShipPromise(production_days=2, transit_min_days=1, transit_max_days=3)
    cutoff = _at(2025, 12, 24, 0)
    first_ships_by, first = promise_dates("Europe/Berlin", promise, cutoff)
    first.earliest = date(2000, 1, 1)
    ships_by, again = promise_dates("Europe/Berlin", promise, cutoff)
    assert again is not first and ships_by == first_ships_by
    assert (again.earliest, again.latest) == (date(2025, 12, 26), date(2025, 12, 30))
    closed = promise.model_copy(update={"closed_dates": [date(2025, 12, 25), date(2025, 12, 26)]})
    assert promise_dates("Europe/Berlin", closed, cutoff)[0] == _at(2025, 12, 30, 0)


def test_a_late_order_is_estimated_to_ship_by_the_end_of_the_next_business_day() -> None:
    """Late on the Thursday before Easter in Berlin: Good Friday and Easter Monday are closed,
    so the new estimate is Tuesday, and the window counts from there."""
    promise = ShipPromise(
        production_days=3,
        transit_min_days=1,
        transit_max_days=3,
        closed_dates=[date(2025, 4, 18), date(2025, 4, 21)],
    )
    estimated, window = late_estimate("Europe/Berlin", promise, _at(2025, 4, 17, 15))
    assert estimated == _at(2025, 4, 22, 15)
    assert (window.earliest, window.latest) == (date(2025, 4, 23), date(2025, 4, 25))
