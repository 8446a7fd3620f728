"""Production facilities: who prints an order, where, and when its files go to production.

The registry is read from a JSON file (``PRINTFLOW_FACILITIES_FILE``, by default the bundled
``domain/facilities.json``). An order is routed by its shipping country (to the facility that
serves it by name, else the fallback, whichever makes its products: ``domain.quotes``); what the
workflow needs
about the facility (``FacilityInfo``: id, name, time zone, API URL, schedule) is copied into the
workflow's input, so a running order keeps the rules it started with even if the file changes.
The API token is deliberately *not* part of ``FacilityInfo``: workflow inputs are stored in
Temporal's history and shown in its Web UI, so a secret must never travel there. Activities look
the token up again by facility id.

A facility may cap how fast it takes print jobs (``max_jobs_per_second``; absent: no cap). The
cap is the worker's business, not the order's: each facility's submissions go to an activity
task queue of their own (``facility_task_queue``), whose dispatch rate the worker asks the
Temporal server to limit, so every worker of the queue shares one limit. It is therefore not
part of ``FacilityInfo`` either: a changed cap applies to waiting orders once the workers restart.

This module does no I/O at import time and imports only the standard library and pydantic, so
workflow code may import it (through the sandbox pass-through) for the models.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "FALLBACK",
    "FacilitiesError",
    "Facilities",
    "Facility",
    "FacilityInfo",
    "Schedule",
    "facility_task_queue",
    "load_facilities",
]

FALLBACK = "*"
"""The ``countries`` entry of the facility that takes every country no other facility serves."""

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _clean_times(value: list[str] | None) -> list[str] | None:
    """Validate ``HH:MM`` strings and return them sorted without duplicates.

    Sorting makes two files that list the same times in another order equal, and keeps the
    schedule code free of ordering assumptions.
    """
    if value is None:
        return None
    if not value:
        raise ValueError("needs at least one time")
    for item in value:
        if not _TIME_RE.match(item):
            raise ValueError(f"invalid time {item!r}, expected HH:MM (00:00 to 23:59)")
    return sorted(set(value))


class StoredSchedule(BaseModel):
    """When a facility sends the collected files to production (the "cutoff").

    Either ``daily`` local wall-clock times (with other times, ``peak_daily``, in the busy
    ``peak_months``), or ``every_seconds`` for development and tests: a batch every N seconds,
    aligned to the Unix epoch so every worker computes the same instants.
    The arithmetic lives in :mod:`domain.schedule`.

    As workflows keep it in their histories: read leniently (unknown fields ignored, nothing
    checked), so a stricter rule for facilities files never stops a running order from decoding
    its own input. ``Schedule`` is the same, checked, as a facilities file gives it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    daily: list[str] | None = None
    peak_daily: list[str] | None = None
    peak_months: list[int] = Field(default_factory=lambda: [10, 11, 12])
    every_seconds: int | None = None

    def times_for_month(self, month: int) -> list[str]:
        """The daily cutoff times that apply on a local date in ``month``.

        Raises ``ValueError`` for an ``every_seconds`` schedule, which has no daily times.
        """
        if self.daily is None:
            raise ValueError("an every_seconds schedule has no daily times")
        if self.peak_daily is not None and month in self.peak_months:
            return self.peak_daily
        return self.daily


class Schedule(StoredSchedule):
    """A schedule as a facilities file gives it: every field checked and normalized."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("daily", "peak_daily")
    @classmethod
    def _times(cls, value: list[str] | None) -> list[str] | None:
        return _clean_times(value)

    @field_validator("peak_months")
    @classmethod
    def _months(cls, value: list[int]) -> list[int]:
        for month in value:
            if not 1 <= month <= 12:
                raise ValueError(f"invalid month {month}, expected 1 to 12")
        return sorted(set(value))

    @field_validator("every_seconds")
    @classmethod
    def _every(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.daily is None and self.every_seconds is None:
            raise ValueError("schedule needs either 'daily' or 'every_seconds'")
        if self.daily is not None and self.every_seconds is not None:
            raise ValueError("schedule has both 'daily' and 'every_seconds'; choose one")
        if self.peak_daily is not None and self.daily is None:
            raise ValueError("'peak_daily' only goes with 'daily'")
        return self


class FacilityInfo(BaseModel):
    """What a workflow needs to know about its facility; safe to store in Temporal's history,
    and read from it leniently (unknown fields ignored, nothing checked): ``Facility`` checks
    what a facilities file says."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str
    timezone: str
    api_url: str
    schedule: StoredSchedule


class Facility(FacilityInfo):
    """A facility as configured: adds the countries it ships to, its API token and how many
    print jobs per second it takes at most (``None``: as many as come).

    Optional, for the catalog (``domain.catalog``, docs/catalog.md): the ``products`` it makes
    and the ``shipping_methods`` it offers (absent: all of the catalog's), and the country whose
    public holidays it does not work on (``holidays_country``; absent: weekends only). The
    catalog is checked against them at start (``domain.quotes.check_offers``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    timezone: str = Field(min_length=1)
    schedule: Schedule
    countries: list[str] = Field(min_length=1)
    api_token: SecretStr
    max_jobs_per_second: float | None = None
    products: list[str] | None = None
    shipping_methods: list[str] | None = None
    holidays_country: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError(
                f"invalid id {value!r}: use letters, digits, '.', '_' and '-', no spaces"
            )
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"api_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("holidays_country")
    @classmethod
    def _holidays_country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not _COUNTRY_RE.match(code):
            raise ValueError(f"invalid country {value!r}: expected an ISO 3166-1 alpha-2 code")
        return code

    @field_validator("products", "shipping_methods")
    @classmethod
    def _some(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("lists nothing; leave it out to mean all of the catalog's")
        return value

    def makes(self, product_uid: str) -> bool:
        return self.products is None or product_uid in self.products

    def offers(self, method_id: str) -> bool:
        return self.shipping_methods is None or method_id in self.shipping_methods

    @field_validator("max_jobs_per_second", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        """A positive, finite number (``0.5`` is one job every two seconds); no bools or text."""
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"must be a positive number of jobs per second, got {value!r}")
        return value

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        """Upper-case and de-duplicate, keeping the file's order (only for readable output)."""
        seen: dict[str, None] = {}
        for raw in value:
            code = raw.strip().upper()
            if code != FALLBACK and not _COUNTRY_RE.match(code):
                raise ValueError(
                    f"invalid country {raw!r}: expected an ISO 3166-1 alpha-2 code or '*'"
                )
            seen[code] = None
        return list(seen)

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("api_token is empty")
        return value

    @property
    def is_fallback(self) -> bool:
        return FALLBACK in self.countries

    def info(self) -> FacilityInfo:
        """The secret-free part, for workflow inputs."""
        return FacilityInfo(
            id=self.id,
            name=self.name,
            timezone=self.timezone,
            api_url=self.api_url,
            schedule=self.schedule,
        )


class FacilitiesError(ValueError):
    """A facilities file or registry is unusable; the message is one line naming the culprit."""


def _check_timezone(key: str) -> None:
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FacilitiesError(f"unknown time zone {key!r}") from exc


def _one_line(error: ValidationError) -> str:
    """Pydantic's multi-line report as ``field: message; field: message``."""
    parts = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"])
        msg = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


class Facilities:
    """The loaded registry: routes a shipping country to exactly one facility.

    All checks that span facilities happen here, so an invalid file fails when it is loaded (at
    API or worker start) rather than when the first order for some country arrives.
    """

    def __init__(self, facilities: list[Facility]) -> None:
        if not facilities:
            raise FacilitiesError("no facilities configured")
        by_id: dict[str, Facility] = {}
        by_country: dict[str, Facility] = {}
        fallback: Facility | None = None
        by_token: dict[str, str] = {}
        for facility in facilities:
            where = f"facility {facility.id!r}"
            if facility.id in by_id:
                raise FacilitiesError(f"{where}: duplicate id")
            # A token identifies the facility posting events: shared, its events could land
            # on the other facility's orders.
            token = facility.api_token.get_secret_value()
            if token in by_token:
                raise FacilitiesError(
                    f"{where}: has the same api_token as facility {by_token[token]!r}; "
                    "every facility needs its own"
                )
            by_token[token] = facility.id
            try:
                _check_timezone(facility.timezone)
            except FacilitiesError as exc:
                raise FacilitiesError(f"{where}: {exc}") from exc.__cause__
            for country in facility.countries:
                if country == FALLBACK:
                    if fallback is not None:
                        raise FacilitiesError(
                            f"{where}: fallback '*' is already set by facility {fallback.id!r}"
                        )
                    fallback = facility
                elif country in by_country:
                    other = by_country[country].id
                    raise FacilitiesError(
                        f"{where}: country {country!r} is already served by facility {other!r}"
                    )
                else:
                    by_country[country] = facility
            by_id[facility.id] = facility
        self._by_id = by_id
        self._by_country = by_country
        self._fallback = fallback

    @classmethod
    def load(cls, path: str | Path) -> Facilities:
        """Read a JSON list of facilities; every problem becomes one ``FacilitiesError`` line."""
        prefix = f"facilities file {path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise FacilitiesError(f"{prefix}: cannot read: {reason}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FacilitiesError(f"{prefix}: not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise FacilitiesError(
                f"{prefix}: expected a JSON list of facilities, got {type(data).__name__}"
            )
        facilities: list[Facility] = []
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise FacilitiesError(f"{prefix}: entry #{index + 1} is not an object")
            raw_id = item.get("id")
            where = f"facility {raw_id!r}" if isinstance(raw_id, str) else f"entry #{index + 1}"
            try:
                facilities.append(Facility.model_validate(item))
            except ValidationError as exc:
                raise FacilitiesError(f"{prefix}: {where}: {_one_line(exc)}") from exc
        try:
            return cls(facilities)
        except FacilitiesError as exc:
            raise FacilitiesError(f"{prefix}: {exc}") from exc

    def route(self, country: str) -> Facility:
        """The facility that prints an order shipping to ``country`` (ISO alpha-2, any case)."""
        code = country.strip().upper()
        facility = self._by_country.get(code, self._fallback)
        if facility is None:
            raise FacilitiesError(
                f"no facility ships to {country!r} and there is no fallback ('*') facility"
            )
        return facility

    def get(self, facility_id: str) -> Facility:
        """The facility with this id; ``KeyError`` if the file no longer lists it."""
        try:
            return self._by_id[facility_id]
        except KeyError:
            raise KeyError(f"unknown facility {facility_id!r}") from None

    def candidates(self, country: str) -> list[Facility]:
        """The facilities that may print an order shipping to ``country``, preferred first:
        the one that serves the country by name, then the fallback ('*')."""
        code = country.strip().upper()
        found: list[Facility] = []
        for facility in (self._by_country.get(code), self._fallback):
            if facility is not None and all(f.id != facility.id for f in found):
                found.append(facility)
        return found

    @property
    def fallback(self) -> Facility | None:
        return self._fallback

    def __iter__(self) -> Iterator[Facility]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, facility_id: object) -> bool:
        return facility_id in self._by_id

    def __repr__(self) -> str:
        return f"Facilities({', '.join(self._by_id)})"


def facility_task_queue(task_queue: str, facility_id: str) -> str:
    """The activity task queue that takes one facility's print submissions, beside the main
    ``task_queue``: the worker rate-limits it to the facility's ``max_jobs_per_second``."""
    return f"{task_queue}-facility-{facility_id}"


@lru_cache(maxsize=8)
def load_facilities(path: str | Path) -> Facilities:
    """``Facilities.load`` once per path and process: the API and the worker route every order
    through the registry, and the file is meant to be read at start, not per order.

    Errors are not cached (``lru_cache`` never caches an exception), so a fixed file loads on the
    next call; ``load_facilities.cache_clear()`` forgets loaded files (tests).
    """
    return Facilities.load(path)
