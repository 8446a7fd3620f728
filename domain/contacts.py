"""A customer contact's conversation and its reply clock: what the API stores, what the
contact's workflow keeps, and the rules of the merchant's reply deadline.

Pure, like ``domain.cases``: no I/O and no clock (callers pass ``now``). Which contacts may go
out at all is ``domain.contact_policy`` (the contact policy); this module is what happens after.

The customer writes at most ``CUSTOMER_MESSAGES_PER_HOUR`` messages an hour per contact, and
the merchant hears of them at most once per ``NOTIFY_INTERVAL`` (the first at once, the rest
counted in the next e-mail).

Statuses: ``open`` while the conversation goes on; ``closed`` 30 days (``close_after``) after
its last message, when its ``/c/{token}`` links stop working and nothing can be added.

The reply clock (``sla_state``): a customer message while no clock runs starts one; the merchant
owes a reply within ``customer_reply.target`` (default ``P1D``) of business time in the
merchant's own time zone, their country's public holidays off (``contact_rules``). More customer
messages before that reply join the running clock. ``on_track`` until the reminder
(``reminder_fraction`` of the target, the merchant is e-mailed), ``at_risk`` until the deadline,
``missed`` after it (recorded and counted in ``GET /v1/support/standards``). The merchant's reply
stops it: ``met`` when in time, ``missed`` stays when late. ``none``: nothing is owed (the
merchant had the last word). The clock itself (``ReplyClock``, ``start_clock``, ``ReplySla``) is
``domain.sla``'s, shared with support cases.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from domain.business_time import Calendar, resolved_calendar
from domain.contact_policy import ContactRefused, check_substitute, check_win_back
from domain.sla import ReplyClock, ReplySla
from domain.stored import StoredModel
from domain.support import SupportConfig
from domain.support_ids import normalize_support_id
from domain.text import REFUSED, InputModel, has_control_characters

MAX_BODY = 10_000
MAX_SUBJECT = 200
REMINDER_FRACTION = 0.75
CLOSE_AFTER = timedelta(days=30)
# The customer's page: at most this many messages per contact in an hour; more are refused
# (429 on the page) and change nothing.
CUSTOMER_MESSAGES_PER_HOUR = 10
# At most one e-mail to the merchant about customer messages per contact this often (the
# default of ``PRINTFLOW_CONTACT_NOTIFY_INTERVAL``, carried in the workflow input).
NOTIFY_INTERVAL = timedelta(minutes=15)


class ContactStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ContactRefusal(StrEnum):
    """Why a contact's workflow refuses a message (the API answers 409 with the code)."""

    CONTACT_CLOSED = "contact_closed"
    TOO_MANY_MESSAGES = "too_many_messages"


AuthorKind = Literal["merchant", "customer", "system"]


# ---------------------------------------------------------------------------- what comes in


def clean_message(value: str) -> str:
    """Message text: line breaks are text (``\\r\\n`` read as ``\\n``), tab too; every other
    control character is refused."""
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if has_control_characters(value.replace("\n", "")):
        raise ValueError(REFUSED.replace("line breaks, ", ""))
    return value


class _ContactInput(InputModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:  # type: ignore[override]
        if info.field_name == "body" and isinstance(value, str):
            return clean_message(value)
        if isinstance(value, str) and has_control_characters(value):
            raise ValueError(REFUSED)
        return value


class ContactCreate(_ContactInput):
    support_id: str = Field(min_length=1, max_length=40)
    # Any text: the policy answers an unknown reason with the allowed list (reason_not_allowed).
    reason: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT)
    body: str = Field(min_length=1, max_length=MAX_BODY)

    @field_validator("support_id")
    @classmethod
    def _support_id(cls, value: str) -> str:
        return normalize_support_id(value)  # InvalidSupportId is a ValueError: a 422 naming it


class ContactMessageCreate(_ContactInput):
    body: str = Field(min_length=1, max_length=MAX_BODY)


def check_reply(body: str) -> None:
    """The policy's text rules hold for every merchant message, not only the first: no
    substitute offers (422), nothing about a customer's own cancel (409)."""
    offer = check_substitute(body)
    if offer:
        raise ContactRefused(
            "substitute_not_allowed",
            f"the message offers a substitute product ({offer.phrase!r}); printflow does not "
            "allow that: cancel the order instead (reason_code inventory_shortage) and, if "
            "you like, invite the customer to place a new order",
            422,
            {"rule": offer.rule, "phrase": offer.phrase},
        )
    win_back = check_win_back(body)
    if win_back:
        raise ContactRefused(
            "customer_cancellation",
            f"the message asks about or argues with a customer's cancel ({win_back.phrase!r}); "
            "customers are not contacted about their own cancellations",
            409,
            {"rule": win_back.rule, "phrase": win_back.phrase},
        )


# ---------------------------------------------------------------------------- the rules


class ContactRules(StoredModel):
    """What a contact's clock follows; read when the contact is created and carried in its
    workflow input, so a running contact keeps the rules it started with."""

    calendar: Calendar  # the merchant's, holidays written out as closed dates
    target: timedelta
    reminder_fraction: float = REMINDER_FRACTION
    close_after: timedelta = CLOSE_AFTER


def merchant_calendar(config: SupportConfig, timezone: str, country: str | None) -> Calendar:
    """The merchant's working week (``customer_reply.hours``) in their own time zone, with
    their country's public holidays (none known for the country: none off)."""
    try:
        return Calendar(
            timezone=timezone, holidays_country=country, hours=config.customer_reply.hours
        )
    except ValueError:  # a country the holidays package does not know
        return Calendar(timezone=timezone, hours=config.customer_reply.hours)


def contact_rules(
    config: SupportConfig, timezone: str, country: str | None, created: date
) -> ContactRules:
    """The rules for a contact created on ``created``: the merchant's calendar with its public
    holidays resolved to dates (``domain.business_time.resolved_calendar``, as for cases), so the
    workflow never looks holidays up and a package upgrade never changes a running deadline."""
    calendar = resolved_calendar(merchant_calendar(config, timezone, country), created)
    return ContactRules(calendar=calendar, target=config.customer_reply.target)


# ---------------------------------------------------------------------------- the contact


class ContactMessage(StoredModel):
    id: str
    author_kind: AuthorKind
    body: str
    created_at: datetime


class Deadline(StoredModel):
    """One reply deadline, as ``customer_contact_deadlines`` keeps it for the standards:
    ``outcome`` None while it runs, then ``in_time`` or ``missed``."""

    id: str  # the customer message that started the clock
    contact_id: str
    merchant_id: str
    started_at: datetime
    due_at: datetime
    answered_at: datetime | None = None
    outcome: Literal["in_time", "missed"] | None = None


class ContactState(StoredModel):
    """What a contact's workflow keeps (and projects to ``customer_contacts``). No message
    bodies: they live in the read model."""

    contact_id: str
    merchant_id: str
    order_id: str
    support_id: str
    reason: str
    subject: str
    status: ContactStatus = ContactStatus.OPEN
    sla_state: ReplySla = ReplySla.NONE
    clock: ReplyClock | None = None
    misses: int = 0
    last_message_at: datetime
    closed_at: datetime | None = None
    messages: int = 1
    version: int = 1
    created_at: datetime
    updated_at: datetime
    # When the customer's newest messages came (at most CUSTOMER_MESSAGES_PER_HOUR of them).
    customer_message_times: list[datetime] = []
    # The merchant's last e-mail about customer messages, and the customer messages since that
    # no e-mail has told of yet (the next one goes ``notify_interval`` after the last).
    notified_at: datetime | None = None
    unnotified: int = 0
    # Digests of the Update ids applied, newest last (bounded: ``contracts.updates``).
    applied_updates: list[str] = []

    @property
    def reply_due_at(self) -> datetime | None:
        return self.clock.due_at if self.clock else None

    @property
    def closes_at(self) -> datetime:
        return self.last_message_at + CLOSE_AFTER


def customer_limit_reached(times: list[datetime], now: datetime) -> bool:
    """The customer sent CUSTOMER_MESSAGES_PER_HOUR messages in the hour before ``now``."""
    recent = [t for t in times if now - t < timedelta(hours=1)]
    return len(recent) >= CUSTOMER_MESSAGES_PER_HOUR


def new_contact_state(
    *,
    contact_id: str,
    merchant_id: str,
    order_id: str,
    support_id: str,
    reason: str,
    subject: str,
    created_at: datetime,
) -> ContactState:
    return ContactState(
        contact_id=contact_id,
        merchant_id=merchant_id,
        order_id=order_id,
        support_id=support_id,
        reason=reason,
        subject=subject,
        last_message_at=created_at,
        created_at=created_at,
        updated_at=created_at,
    )


class ContactSummary(BaseModel):
    """A contact as lists and webhooks show it (the detail adds its messages)."""

    id: str
    support_id: str
    order_id: str
    reason: str
    subject: str
    status: ContactStatus
    reply_due_at: datetime | None
    sla_state: ReplySla
    misses: int
    closes_at: datetime | None
    created_at: datetime
    updated_at: datetime


def contact_summary(state: ContactState) -> ContactSummary:
    return ContactSummary(
        id=state.contact_id,
        support_id=state.support_id,
        order_id=state.order_id,
        reason=state.reason,
        subject=state.subject,
        status=state.status,
        reply_due_at=state.reply_due_at,
        sla_state=state.sla_state,
        misses=state.misses,
        closes_at=state.closes_at if state.status is ContactStatus.OPEN else None,
        created_at=state.created_at,
        updated_at=state.updated_at,
    )
