"""Response clocks: a deadline in business time, with a warning before it.

Support cases and customer contacts both run one: a case's clock runs while the support team owes
the merchant an answer, a contact's while the merchant owes the customer a reply. A clock starts
at a message (``start_clock``), is *at risk* once ``at_risk_fraction`` of its target has passed
in the calendar's business time (a case warns the support queue, a contact reminds the
merchant), and is due when the whole target has passed. An answer stops it: in time, or late.

The state of a clock as it is stored and shown has two sets of values, one per conversation, and
both keep the strings they always had (workflow histories, the read model and the API carry
them): ``SlaState`` for a case (``breached`` when late, ``paused`` while the case waits on the
merchant) and ``ReplySla`` for a contact (``missed`` when late, ``none`` while nothing is owed).

Pure and deterministic, like ``domain.business_time``: workflows compute their deadlines with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from domain.business_time import Calendar, add


class SlaState(StrEnum):
    """A support case's response clock, as ``support_cases.sla_state`` and the API show it."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    MET = "met"
    PAUSED = "paused"


class ReplySla(StrEnum):
    """A customer contact's reply clock, as ``customer_contacts.sla_state`` and the API show it."""

    NONE = "none"
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    MET = "met"
    MISSED = "missed"


class Clock(BaseModel):
    """A running clock: started, at risk, due (UTC instants)."""

    started_at: datetime
    at_risk_at: datetime
    due_at: datetime

    def late(self, now: datetime) -> bool:
        """An answer at ``now`` comes after the deadline."""
        return now > self.due_at


class ResponseClock(Clock):
    """A support case's: the team's first response to a case, or its next one to a message."""

    kind: Literal["first_response", "next_response"]


class ReplyClock(Clock):
    """A customer contact's: started by the customer message ``message_id``. Its at-risk moment
    is when the merchant is reminded, kept under its name ``remind_at``."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    message_id: str
    at_risk_at: datetime = Field(alias="remind_at")


ClockT = TypeVar("ClockT", bound=Clock)


def start_clock(
    clock: type[ClockT],
    calendar: Calendar,
    start: datetime,
    target: timedelta,
    at_risk_fraction: float,
    **started_by: str,
) -> ClockT:
    """A ``clock`` started at ``start`` with ``target`` of business time in ``calendar``;
    ``started_by`` are its own fields (a case's ``kind``, a contact's ``message_id``)."""
    return clock.model_validate(
        {
            "started_at": start,
            "at_risk_at": add(calendar, start, target * at_risk_fraction),
            "due_at": add(calendar, start, target),
            **started_by,
        }
    )
