"""The catalog file: what it holds, exact prices, and the faults it is refused for (naming
where), alone and against a facilities file."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain.catalog import CURRENCIES, Catalog, CatalogError, load_catalog
from domain.facilities import Facilities
from domain.quotes import check_offers
from runtime.settings import BUNDLED_CATALOG, BUNDLED_FACILITIES, Settings
from runtime.startup import ConfigError, check_static

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = json.loads(BUNDLED_CATALOG.read_text())


def _file(tmp_path: Path, data: Any, name: str = "catalog.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _refused(tmp_path: Path, data: Any) -> str:
    with pytest.raises(CatalogError) as caught:
        Catalog.load(_file(tmp_path, data))
    return str(caught.value)


def test_the_bundled_catalog_has_the_products_the_docs_and_tests_order() -> None:
    catalog = load_catalog(BUNDLED_CATALOG)
    wanted = {
        "mug_11oz_white",
        "poster_a3_matte",
        "poster_a2_matte",
        "canvas_30x40",
        "tshirt_unisex_m_black",
        "greeting_card_a6",
    }
    # Every product_uid an example or a test sends through the API (the domain's own unit
    # tests use made-up ones, such as "p", that never reach the catalog).
    used = set()
    for path in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("tests/**/*.py")]:
        if path.parent.name in ("catalog",) and path.name.startswith("test_"):
            continue
        used |= set(re.findall(r'"product_uid":\s*"([a-z0-9][a-z0-9_.-]+)"', path.read_text()))
    used -= {"p", "mug", "poster"}
    assert wanted <= set(p.product_uid for p in catalog)
    assert used <= set(p.product_uid for p in catalog), used - set(catalog)
    standard = catalog.method("standard")
    assert standard is not None and "*" in standard.transit_days


def test_prices_are_exact_decimals_in_every_currency() -> None:
    catalog = load_catalog(BUNDLED_CATALOG)
    for product in catalog:
        assert set(product.prices) == set(CURRENCIES)
        for price in product.prices.values():
            assert isinstance(price, Decimal) and price == price.quantize(Decimal("0.01"))
    mug = catalog.product("mug_11oz_white")
    assert mug is not None
    assert {c: str(p) for c, p in mug.prices.items()} == {
        "EUR": "9.90",
        "USD": "10.90",
        "GBP": "8.50",
    }
    express = catalog.method("express")
    assert express is not None
    # 1 + 9 further: what floats would make 14.95 + 9 * 3.00 is no worry here; 0.10-step
    # amounts are checked in test_quotes.
    assert str(express.prices["GBP"].for_quantity(10)) == "35.45"
    assert str(express.prices["USD"].for_quantity(1)) == "16.99"


@pytest.mark.parametrize(
    ("price", "said"),
    [
        (12.5, "not float"),
        (12, "not int"),
        ("12.345", "'12.345' is not an amount"),
        ("-1.00", "'-1.00' is not an amount"),
        ("twelve", "'twelve' is not an amount"),
        ("1e3", "'1e3' is not an amount"),
    ],
)
def test_a_price_that_is_not_an_amount_is_refused_naming_the_product_and_currency(
    tmp_path: Path, price: Any, said: str
) -> None:
    data = copy.deepcopy(BUNDLED)
    data["products"][2]["prices"]["USD"] = price
    message = _refused(tmp_path, data)
    assert f"product {data['products'][2]['product_uid']!r}: prices.USD" in message
    assert said in message


def test_the_catalogs_other_faults_are_named(tmp_path: Path) -> None:
    data = copy.deepcopy(BUNDLED)
    del data["products"][0]["prices"]["GBP"]
    assert "product 'mug_11oz_white': prices: missing a price in GBP" in _refused(tmp_path, data)

    data = copy.deepcopy(BUNDLED)
    data["shipping_methods"][1]["prices"]["EUR"]["each_further_item"] = 2.0
    message = _refused(tmp_path, data)
    assert "shipping method 'tracked': prices.EUR.each_further_item" in message

    data = copy.deepcopy(BUNDLED)
    data["shipping_methods"][0]["transit_days"]["NOWHERE"] = {"min": 1, "max": 2}
    assert "shipping method 'standard': transit_days.NOWHERE" in _refused(tmp_path, data)

    data = copy.deepcopy(BUNDLED)
    data["shipping_methods"][2]["transit_days"]["EU"] = {"min": 3, "max": 2}
    assert "'express': transit_days.EU: Value" not in (message := _refused(tmp_path, data))
    assert "shipping method 'express'" in message and "max (2) is below min (3)" in message

    data = copy.deepcopy(BUNDLED)
    data["products"].append(copy.deepcopy(data["products"][0]))
    assert "product 'mug_11oz_white': listed twice" in _refused(tmp_path, data)

    data = copy.deepcopy(BUNDLED)
    data["regions"]["DE"] = ["AT"]
    assert "regions.DE" in _refused(tmp_path, data)

    assert "not valid JSON" in _refused_text(tmp_path, "{")


def _refused_text(tmp_path: Path, text: str) -> str:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        Catalog.load(path)
    return str(caught.value)


def _facilities(tmp_path: Path, **extra: Any) -> Path:
    entries = json.loads(BUNDLED_FACILITIES.read_text())
    entries[1].update(extra)  # berlin
    return _file(tmp_path, entries, "facilities.json")


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({"products": ["mug_11oz_white", "mug_15oz"]}, "products: 'mug_15oz' is not in"),
        ({"shipping_methods": ["standard", "drone"]}, "shipping_methods: 'drone' is not in"),
        ({"holidays_country": "ZZ"}, "holidays_country: no public holidays known for 'ZZ'"),
    ],
)
def test_a_facilities_file_naming_what_the_catalog_lacks_is_refused_at_start(
    tmp_path: Path, extra: dict[str, Any], said: str
) -> None:
    path = _facilities(tmp_path, **extra)
    with pytest.raises(CatalogError, match=re.escape(said)):
        check_offers(load_catalog(BUNDLED_CATALOG), Facilities.load(path))
    with pytest.raises(ConfigError) as caught:
        check_static(Settings(facilities_file=path, payload_keys=None))
    assert "facility 'berlin'" in str(caught.value) and said in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_broken_catalog_file_stops_the_process_naming_it(tmp_path: Path) -> None:
    data = copy.deepcopy(BUNDLED)
    data["products"][5]["prices"]["EUR"] = "11,90"
    path = _file(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        check_static(Settings(catalog_file=path, payload_keys=None))
    message = str(caught.value)
    assert f"catalog file {path}" in message and "prices.EUR" in message
    assert f"product {data['products'][5]['product_uid']!r}" in message


def test_facilities_files_without_the_catalogs_fields_keep_working(tmp_path: Path) -> None:
    entries = json.loads(BUNDLED_FACILITIES.read_text())
    for entry in entries:
        entry.pop("holidays_country", None)
    registry = Facilities.load(_file(tmp_path, entries, "old.json"))
    check_offers(load_catalog(BUNDLED_CATALOG), registry)
    berlin = registry.get("berlin")
    assert berlin.products is None and berlin.shipping_methods is None
    assert berlin.makes("canvas_30x40") and berlin.offers("express")
    assert berlin.holidays_country is None
