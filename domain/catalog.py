"""The catalog: what can be ordered, what it costs, and the shipping methods that carry it.

Read from a JSON file (``PRINTFLOW_CATALOG_FILE``, by default the bundled
``domain/catalog.json``; the contract is docs/catalog.md):

- ``products``: ``product_uid``, ``name``, ``kind``, ``print_areas`` (``name``, ``width_mm``,
  ``height_mm``, ``bleed_mm``, ``min_dpi``), ``file_types``, ``weight_g``,
  ``production_days`` (business days from the cutoff to the parcel leaving the facility) and
  ``prices`` (one per currency, every currency of ``CURRENCIES``);
- ``shipping_methods``: ``id``, ``name``, ``tracked``, ``transit_days`` (``{min, max}``
  business days per destination: a country, a region of ``regions``, or ``*`` for everywhere
  else) and ``prices`` (per currency: ``first_item`` and ``each_further_item``);
- ``regions``: names for lists of countries (``EU``), used by ``transit_days``;
- ``quote_valid_minutes``: how long a quote holds its prices (default a day).

Amounts are exact: decimal strings (``"12.50"``), never JSON numbers, at most two decimals and
never negative. A file with a fault is refused with where the fault is
(``catalog file x.json: product 'mug': prices.EUR: ...``).

Pure: no I/O but ``Catalog.load`` reading the file it is given, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.countries import ISO_COUNTRIES

__all__ = [
    "CURRENCIES",
    "EVERYWHERE",
    "Amount",
    "Catalog",
    "CatalogError",
    "Currency",
    "MethodPrice",
    "PrintArea",
    "Product",
    "ShippingMethod",
    "Transit",
    "amount",
    "load_catalog",
]

Currency = Literal["EUR", "USD", "GBP"]
CURRENCIES: tuple[Currency, ...] = ("EUR", "USD", "GBP")
EVERYWHERE = "*"
"""The ``transit_days`` key of a method that reaches every country not named otherwise."""

CENT = Decimal("0.01")
_AMOUNT_RE = re.compile(r"^(0|[1-9]\d{0,8})(\.\d{1,2})?$")
_UID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
_REGION_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")


def amount(value: object) -> Decimal:
    """A price from a file or a request: a string such as ``"12.50"`` (at most two decimals,
    not negative, below a billion) as an exact ``Decimal`` with two places. JSON numbers are
    refused: ``12.1`` read as a float is not the amount written."""
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(
            f'write amounts as decimal strings such as "12.50", not {type(value).__name__}'
        )
    if not _AMOUNT_RE.match(text):
        raise ValueError(
            f'{text[:32]!r} is not an amount: digits with at most two decimals, such as "12.50"'
        )
    try:
        return Decimal(text).quantize(CENT)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(f"{text[:32]!r} is not an amount") from None


Amount = Annotated[Decimal, BeforeValidator(amount)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _every_currency(prices: dict[str, object]) -> dict[str, object]:
    missing = [c for c in CURRENCIES if c not in prices]
    if missing:
        raise ValueError(f"missing a price in {', '.join(missing)}")
    return prices


class PrintArea(_Model):
    name: str = Field(min_length=1, max_length=64)
    width_mm: int = Field(gt=0, le=10_000)
    height_mm: int = Field(gt=0, le=10_000)
    bleed_mm: int = Field(default=0, ge=0, le=100)
    min_dpi: int = Field(default=150, gt=0, le=2400)


class Product(_Model):
    product_uid: str
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
    print_areas: list[PrintArea] = Field(min_length=1)
    file_types: list[str] = Field(min_length=1)
    weight_g: int = Field(gt=0, le=100_000)
    production_days: int = Field(ge=0, le=60)
    prices: dict[Currency, Amount]

    @field_validator("product_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        if not _UID_RE.match(value):
            raise ValueError(
                f"invalid product_uid {value!r}: lower-case letters, digits, '_', '.', '-'"
            )
        return value

    @field_validator("prices", mode="before")
    @classmethod
    def _prices(cls, value: object) -> object:
        return _every_currency(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _unique_areas(self) -> Product:
        names = [a.name for a in self.print_areas]
        if len(names) != len(set(names)):
            raise ValueError("print area names must be unique within a product")
        return self


class Transit(_Model):
    """Business days in transit, from leaving the facility to the door."""

    min: int = Field(ge=0, le=90)
    max: int = Field(ge=0, le=90)

    @model_validator(mode="after")
    def _ordered(self) -> Transit:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class MethodPrice(_Model):
    first_item: Amount
    each_further_item: Amount

    def for_quantity(self, quantity: int) -> Decimal:
        """The shipping of ``quantity`` pieces in one parcel (zero pieces ship nothing)."""
        if quantity <= 0:
            return Decimal("0.00")
        return (self.first_item + self.each_further_item * (quantity - 1)).quantize(CENT)


class ShippingMethod(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    name: str = Field(min_length=1, max_length=100)
    tracked: bool
    transit_days: dict[str, Transit] = Field(min_length=1)
    prices: dict[Currency, MethodPrice]

    @field_validator("prices", mode="before")
    @classmethod
    def _prices(cls, value: object) -> object:
        return _every_currency(value) if isinstance(value, dict) else value


class CatalogFile(_Model):
    products: list[Product] = Field(min_length=1)
    shipping_methods: list[ShippingMethod] = Field(min_length=1)
    regions: dict[str, list[str]] = Field(default_factory=dict)
    quote_valid_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60)


class CatalogError(ValueError):
    """A catalog file is unusable; the message is one line naming where the fault is."""


def _one_line(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"])
        msg = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


class Catalog:
    """The loaded catalog: products by uid, shipping methods by id, regions resolved."""

    def __init__(self, data: CatalogFile) -> None:
        self.quote_valid_minutes = data.quote_valid_minutes
        self._regions: dict[str, frozenset[str]] = {}
        for name, countries in data.regions.items():
            where = f"regions.{name}"
            if not _REGION_RE.match(name) or name in ISO_COUNTRIES:
                raise CatalogError(
                    f"{where}: a region's name is 2 to 32 capitals, digits or '_', and not a "
                    "country's code"
                )
            unknown = [c for c in countries if c not in ISO_COUNTRIES]
            if unknown or not countries:
                raise CatalogError(
                    f"{where}: not ISO 3166-1 alpha-2 countries: {', '.join(unknown) or 'none'}"
                )
            self._regions[name] = frozenset(countries)
        self._products: dict[str, Product] = {}
        for product in data.products:
            if product.product_uid in self._products:
                raise CatalogError(f"product {product.product_uid!r}: listed twice")
            self._products[product.product_uid] = product
        self._methods: dict[str, ShippingMethod] = {}
        for method in data.shipping_methods:
            where = f"shipping method {method.id!r}"
            if method.id in self._methods:
                raise CatalogError(f"{where}: listed twice")
            for key in method.transit_days:
                if key != EVERYWHERE and key not in ISO_COUNTRIES and key not in self._regions:
                    raise CatalogError(
                        f"{where}: transit_days.{key}: not a country, a region of 'regions' "
                        f"({', '.join(self._regions) or 'none defined'}) or '*'"
                    )
            self._methods[method.id] = method

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Read a catalog file; every problem becomes one ``CatalogError`` line."""
        prefix = f"catalog file {path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CatalogError(f"{prefix}: cannot read: {reason}") from exc
        try:
            # A price written as a JSON number arrives as a float or int: ``amount`` names it.
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{prefix}: not valid JSON: {exc}") from exc
        return cls.parse(data, prefix)

    @classmethod
    def parse(cls, data: object, prefix: str = "catalog") -> Catalog:
        if not isinstance(data, dict):
            raise CatalogError(f"{prefix}: expected a JSON object with products and methods")
        # Each entry on its own, so the error names the product or method at fault.
        for section, key in (("products", "product_uid"), ("shipping_methods", "id")):
            entries = data.get(section)
            if not isinstance(entries, list):
                continue
            model = Product if section == "products" else ShippingMethod
            for index, entry in enumerate(entries):
                name = entry.get(key) if isinstance(entry, dict) else None
                where = (
                    f"{'product' if section == 'products' else 'shipping method'} {name!r}"
                    if isinstance(name, str)
                    else f"{section} entry #{index + 1}"
                )
                try:
                    model.model_validate(entry)
                except ValidationError as exc:
                    raise CatalogError(f"{prefix}: {where}: {_one_line(exc)}") from exc
        try:
            parsed = CatalogFile.model_validate(data)
        except ValidationError as exc:
            raise CatalogError(f"{prefix}: {_one_line(exc)}") from exc
        try:
            return cls(parsed)
        except CatalogError as exc:
            raise CatalogError(f"{prefix}: {exc}") from exc

    # ------------------------------------------------------------------ reading

    def product(self, product_uid: str) -> Product | None:
        return self._products.get(product_uid)

    def method(self, method_id: str) -> ShippingMethod | None:
        return self._methods.get(method_id)

    @property
    def products(self) -> list[Product]:
        return list(self._products.values())

    @property
    def methods(self) -> list[ShippingMethod]:
        return list(self._methods.values())

    def __contains__(self, product_uid: object) -> bool:
        return product_uid in self._products

    def __iter__(self) -> Iterator[Product]:
        return iter(self._products.values())

    def transit(self, method: ShippingMethod, country: str) -> Transit | None:
        """The method's transit days to ``country``: the country's own entry, else the first
        region (in the file's order) that holds it, else ``*``; None: the method does not go
        there."""
        code = country.upper()
        if code in method.transit_days:
            return method.transit_days[code]
        for key, transit in method.transit_days.items():
            if key in self._regions and code in self._regions[key]:
                return transit
        return method.transit_days.get(EVERYWHERE)

    def methods_to(self, country: str) -> list[tuple[ShippingMethod, Transit]]:
        """The methods that reach ``country``, in the file's order, with their transit days."""
        found = []
        for method in self._methods.values():
            transit = self.transit(method, country)
            if transit is not None:
                found.append((method, transit))
        return found


@lru_cache(maxsize=8)
def load_catalog(path: str | Path) -> Catalog:
    """``Catalog.load`` once per path and process (errors are not cached)."""
    return Catalog.load(path)
