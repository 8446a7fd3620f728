"""What support a merchant's plan includes, and the support file: calendar, targets, addresses.

Plans (docs/support.md, "Plans"): ``free``, ``lite``, ``growth``, ``premium``; the names merchants
knew before (``essential``, ``small_shop``, ``large_shop``, ``business``) map one to one. Every
plan has tickets and live chat; priority handling from ``growth`` up; a phone callback and a
dedicated customer success manager with ``premium``.

The support file (``SUPPORT_FILE``, JSON; ``domain/support.json`` is bundled) holds the support
team's business calendar, the response targets per priority as ISO 8601 durations of business
time (``PT8H`` is eight working hours), the fraction of a target at which a case is at risk, the
addresses that hear about cases, and the merchant's own reply target to their customers.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from domain.business_time import Calendar, Hours
from domain.orders import Email

BUNDLED_SUPPORT_FILE = Path(__file__).resolve().parent / "support.json"


class Plan(StrEnum):
    FREE = "free"
    LITE = "lite"
    GROWTH = "growth"
    PREMIUM = "premium"


LEGACY_PLANS = {
    "essential": Plan.FREE,
    "small_shop": Plan.LITE,
    "large_shop": Plan.GROWTH,
    "business": Plan.PREMIUM,
}


def plan_named(name: str) -> Plan:
    """The plan for a current or a legacy name; ValueError naming the allowed ones."""
    value = name.strip().lower()
    if value in LEGACY_PLANS:
        return LEGACY_PLANS[value]
    try:
        return Plan(value)
    except ValueError:
        allowed = [p.value for p in Plan] + sorted(LEGACY_PLANS)
        raise ValueError(f"unknown plan {name!r}; one of {', '.join(allowed)}") from None


PlanName = Annotated[Plan, BeforeValidator(lambda v: plan_named(v) if isinstance(v, str) else v)]


class Includes(BaseModel):
    """What a plan includes, as ``GET /v1/support/plan`` shows it."""

    model_config = ConfigDict(frozen=True)

    ticket: bool = True
    chat: bool = True
    priority: bool = False
    callback: bool = False
    csm: bool = False


INCLUDES: dict[Plan, Includes] = {
    Plan.FREE: Includes(),
    Plan.LITE: Includes(),
    Plan.GROWTH: Includes(priority=True),
    Plan.PREMIUM: Includes(priority=True, callback=True, csm=True),
}


def _business_duration(value: object) -> object:
    # ISO 8601 (``PT8H``, ``P1D``) through pydantic; a bare number is seconds.
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    return value


BusinessDuration = Annotated[timedelta, BeforeValidator(_business_duration)]


class StoredTargets(BaseModel):
    """Response targets as a case's workflow carries them: read leniently from its history
    (unknown fields ignored, nothing checked); ``Targets`` checks what the support file says."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    first_response: timedelta
    next_response: timedelta


class Targets(StoredTargets):
    model_config = ConfigDict(frozen=True, extra="forbid")

    first_response: BusinessDuration
    next_response: BusinessDuration

    @field_validator("first_response", "next_response")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a response target must be longer than zero")
        return value


class CustomerReply(BaseModel):
    """How fast a merchant answers their own customer, in the merchant's business days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: BusinessDuration = timedelta(days=1)
    # The merchant's working week, in their own time zone with their country's holidays.
    hours: Hours = Field(
        default_factory=lambda: {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    )


class SupportConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    calendar: Calendar
    targets: dict[str, Targets]
    at_risk_fraction: float = Field(0.75, gt=0, lt=1)
    support_address: Email
    escalation_address: Email
    customer_reply: CustomerReply = CustomerReply()

    @field_validator("targets")
    @classmethod
    def _every_priority(cls, value: dict[str, Targets]) -> dict[str, Targets]:
        missing = {"normal", "priority", "callback"} - set(value)
        if missing:
            raise ValueError(f"targets missing for: {', '.join(sorted(missing))}")
        return value


class SupportFileError(ValueError):
    """The support file cannot be read or does not describe a working support desk."""


@lru_cache(maxsize=8)
def load_support(path: Path = BUNDLED_SUPPORT_FILE) -> SupportConfig:
    try:
        return SupportConfig.model_validate_json(path.read_bytes())
    except OSError as err:
        raise SupportFileError(f"support file {path}: {err.strerror or err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SupportFileError(f"support file {path}: {where}: {first['msg']}") from None
