"""Where a merchant is: their time zone (IANA name) and country (ISO 3166-1 alpha-2).

Both decide the merchant's own business days (their reply targets to customers,
docs/customer-contacts.md, "The reply clock"). Time zones are checked against the IANA database
the process has (``zoneinfo``), not merely parsed: ``localtime`` or a path would load, but mean
nothing.
"""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator

from domain.countries import ISO_COUNTRIES

# Names in the IANA database that are files there but no place.
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    """Every IANA time zone name; read from disk once (call it at start-up, off the loop)."""
    return frozenset(zoneinfo.available_timezones() - _NOT_PLACES) | {"UTC"}


def timezone_named(name: str) -> str:
    """``name`` if it is an IANA time zone (``Europe/Oslo``, ``UTC``); ValueError otherwise."""
    if len(name) > 64 or not _ZONE_NAME.fullmatch(name) or name not in known_timezones():
        raise ValueError(
            f"unknown time zone {name[:64]!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        )
    return name


def country_named(code: str) -> str:
    """The ISO 3166-1 alpha-2 code, upper-cased; ValueError for anything else."""
    value = code.strip().upper()
    if value not in ISO_COUNTRIES:
        raise ValueError(
            f"unknown country {code[:8]!r}; use an ISO 3166-1 alpha-2 code such as 'DE'"
        )
    return value


TimezoneName = Annotated[str, AfterValidator(timezone_named)]
CountryCode = Annotated[str, AfterValidator(country_named)]
