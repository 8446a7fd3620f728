"""Support cases: what a merchant sends, what a case's workflow keeps, and the rules of its clock.

A case is a conversation between a merchant and the platform's support team, with response
targets in business time (docs/support.md, "The clock"). Pure, like ``domain.orders``: no I/O and no
clock (callers pass ``now``), so the workflow, the API and the tests share every rule.

Statuses:

- ``open``: the support team has the next move (or has answered and nothing is pending);
- ``waiting_on_merchant``: an agent asked the merchant something; the response clock is paused,
  the merchant is reminded after 3 days and the case closes after 7 without an answer;
- ``resolved``: an agent resolved it; a merchant message reopens it, otherwise it closes after
  7 days;
- ``closed``: final (the merchant closed it, or it closed itself as above); nothing changes.

The response clock (``sla``): a case created, or a merchant message on a case whose last word
was the team's, starts a clock: the first response target from the case's creation, the next
response target from that message. ``on_track`` until ``at_risk_fraction`` of the target has
passed in business time, ``at_risk`` until the target, ``breached`` after it. An agent's reply
(or a resolve) stops it: ``met`` when in time, ``breached`` stays when late. While the case waits
on the merchant the state is ``paused``; their message starts the next-response clock. The clock
itself (``ResponseClock``, ``start_clock``, ``SlaState``) is ``domain.sla``'s, shared with
customer contacts.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.business_time import Calendar, resolved_calendar
from domain.sla import ResponseClock, start_clock
from domain.sla import SlaState as SlaState  # a case's, as the API names it
from domain.stored import StoredModel
from domain.support import INCLUDES, Plan, StoredTargets, SupportConfig
from domain.text import REFUSED, InputModel, has_control_characters


class CaseType(StrEnum):
    SUPPORT_REQUEST = "support_request"
    PARCEL_COMPLAINT = "parcel_complaint"


class Category(StrEnum):
    ORDERS = "orders"
    SHIPMENTS = "shipments"
    INTEGRATION = "integration"
    ACCOUNT = "account"
    BILLING = "billing"


# Commercial questions: a premium merchant's customer success manager answers them.
COMMERCIAL = frozenset({Category.ACCOUNT, Category.BILLING})


class Channel(StrEnum):
    TICKET = "ticket"
    CHAT = "chat"
    CALLBACK = "callback"


class Priority(StrEnum):
    NORMAL = "normal"
    PRIORITY = "priority"


class CaseStatus(StrEnum):
    OPEN = "open"
    WAITING_ON_MERCHANT = "waiting_on_merchant"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Queue(StrEnum):
    SUPPORT = "support"
    CSM = "csm"


class ComplaintKind(StrEnum):
    DAMAGED = "damaged"
    LOST = "lost"
    LATE = "late"
    WRONG_ITEM = "wrong_item"
    QUALITY = "quality"


# A photo shows what went wrong; a lost or late parcel has nothing to photograph.
NEEDS_PHOTO = frozenset({ComplaintKind.DAMAGED, ComplaintKind.QUALITY, ComplaintKind.WRONG_ITEM})
AuthorKind = Literal["merchant", "agent", "system"]


class CaseRefusal(StrEnum):
    """Why a case's workflow refuses a change (the API answers 409 with the code)."""

    CASE_CLOSED = "case_closed"
    CASE_RESOLVED = "case_resolved"


# ---------------------------------------------------------------------------- what comes in

MAX_BODY = 10_000
MAX_ATTACHMENTS = 10


def _multiline(value: str) -> str:
    """Message text: line breaks are text here; every other control character is refused."""
    value = value.replace("\r\n", "\n").strip()
    if has_control_characters(value.replace("\n", "")):
        raise ValueError(REFUSED.replace("line breaks, ", ""))
    return value


_MULTILINE_FIELDS = frozenset({"description", "body"})


class _CaseInput(InputModel):
    """Like every input: no control characters, except line breaks in message text."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:  # type: ignore[override]
        if info.field_name in _MULTILINE_FIELDS and isinstance(value, str):
            return _multiline(value)
        if isinstance(value, dict):
            strings = list(value.keys())
        elif isinstance(value, list | tuple):
            strings = list(value)
        else:
            strings = [value]
        if any(isinstance(v, str) and has_control_characters(v) for v in strings):
            raise ValueError(REFUSED)
        return value


Attachments = list[HttpUrl]


class Complaint(_CaseInput):
    kind: ComplaintKind
    photo_urls: list[HttpUrl] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)


class CaseCreate(_CaseInput):
    type: CaseType
    category: Category
    subject: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=MAX_BODY)
    channel: Channel = Channel.TICKET
    phone: str | None = Field(default=None, max_length=25, pattern=r"^[0-9+()\-. /]*$")
    order_id: str | None = Field(default=None, max_length=40)
    request_ids: list[str] = Field(default_factory=list, max_length=20)
    attachments: Attachments = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    complaint: Complaint | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CaseCreate:
        if self.channel is Channel.CALLBACK and not self.phone:
            raise ValueError("a callback needs the phone number to call")
        if self.type is CaseType.PARCEL_COMPLAINT:
            if self.complaint is None:
                raise ValueError("a parcel complaint needs complaint {kind, photo_urls?}")
            if self.order_id is None:
                raise ValueError("a parcel complaint needs the order_id of a shipped order")
            if self.complaint.kind in NEEDS_PHOTO and not self.complaint.photo_urls:
                raise ValueError(
                    f"a {self.complaint.kind.value} complaint needs at least one photo "
                    "(complaint.photo_urls)"
                )
        elif self.complaint is not None:
            raise ValueError("complaint belongs to a parcel_complaint only")
        if len(set(self.request_ids)) != len(self.request_ids):
            raise ValueError("request_ids must not repeat")
        return self


class MessageCreate(_CaseInput):
    body: str = Field(min_length=1, max_length=MAX_BODY)
    attachments: Attachments = Field(default_factory=list, max_length=MAX_ATTACHMENTS)


class AgentMessageCreate(_CaseInput):
    body: str = Field(min_length=1, max_length=MAX_BODY)
    waiting_on_merchant: bool = False


class AssignRequest(_CaseInput):
    agent_id: str = Field(min_length=1, max_length=40)


# ---------------------------------------------------------------------------- the rules


def priority_for(plan: Plan) -> Priority:
    return Priority.PRIORITY if INCLUDES[plan].priority else Priority.NORMAL


def channel_allowed(plan: Plan, channel: Channel) -> bool:
    includes = INCLUDES[plan]
    return {
        Channel.TICKET: includes.ticket,
        Channel.CHAT: includes.chat,
        Channel.CALLBACK: includes.callback,
    }[channel]


def target_key(channel: Channel, priority: Priority) -> str:
    """Which targets of the support file apply: ``callback``, ``priority`` or ``normal``."""
    return "callback" if channel is Channel.CALLBACK else priority.value


def route(plan: Plan, category: Category, csm_agent_id: str | None) -> tuple[Queue, str | None]:
    """(queue, assignee): commercial questions of premium merchants with a CSM go to the CSM."""
    if category in COMMERCIAL and INCLUDES[plan].csm and csm_agent_id:
        return Queue.CSM, csm_agent_id
    return Queue.SUPPORT, None


class CaseRules(StoredModel):
    """What a case's clock and its notices follow; read when the case is created and carried in
    its workflow input, so a running case keeps the rules it started with."""

    calendar: Calendar
    targets: StoredTargets
    at_risk_fraction: float
    support_address: str
    escalation_address: str
    waiting_reminder_after: timedelta = timedelta(days=3)
    waiting_close_after: timedelta = timedelta(days=7)
    resolved_close_after: timedelta = timedelta(days=7)


def rules_for(config: SupportConfig, key: str, created: date) -> CaseRules:
    return CaseRules(
        calendar=resolved_calendar(config.calendar, created),
        targets=config.targets[key],
        at_risk_fraction=config.at_risk_fraction,
        support_address=config.support_address,
        escalation_address=config.escalation_address,
    )


# ---------------------------------------------------------------------------- the case


class CaseMessage(StoredModel):
    id: str
    author_kind: AuthorKind
    author_id: str | None = None
    body: str
    attachments: list[str] = []
    created_at: datetime


class CaseState(StoredModel):
    """What a case's workflow keeps (and projects to ``support_cases``). No message bodies: the
    messages live in the read model, so a long conversation keeps the history small."""

    case_id: str
    number: int
    merchant_id: str
    type: CaseType
    category: Category
    channel: Channel
    priority: Priority
    subject: str
    order_id: str | None = None
    status: CaseStatus = CaseStatus.OPEN
    queue: Queue = Queue.SUPPORT
    assignee_id: str | None = None
    sla_state: SlaState = SlaState.ON_TRACK
    first_response_due_at: datetime
    first_responded_at: datetime | None = None
    next_response_due_at: datetime | None = None
    clock: ResponseClock | None = None
    waiting_since: datetime | None = None
    reminder_sent: bool = False
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None
    messages: int = 0
    version: int = 1
    created_at: datetime
    updated_at: datetime
    # Digests of the Update ids applied, newest last (bounded: ``contracts.updates``).
    applied_updates: list[str] = []

    @property
    def due_at(self) -> datetime | None:
        """When the team must answer next, while a clock runs."""
        return self.clock.due_at if self.clock else None


def new_case_state(
    *,
    case_id: str,
    number: int,
    merchant_id: str,
    plan: Plan,
    csm_agent_id: str | None,
    body: CaseCreate,
    rules: CaseRules,
    created_at: datetime,
) -> CaseState:
    """A case as it is created: the API stores it and the workflow starts from it."""
    priority = priority_for(plan)
    queue, assignee = route(plan, body.category, csm_agent_id)
    clock = start_clock(
        ResponseClock,
        rules.calendar,
        created_at,
        rules.targets.first_response,
        rules.at_risk_fraction,
        kind="first_response",
    )
    return CaseState(
        case_id=case_id,
        number=number,
        merchant_id=merchant_id,
        type=body.type,
        category=body.category,
        channel=body.channel,
        priority=priority,
        subject=body.subject,
        order_id=body.order_id,
        queue=queue,
        assignee_id=assignee,
        first_response_due_at=clock.due_at,
        clock=clock,
        messages=1,
        created_at=created_at,
        updated_at=created_at,
    )


# ---------------------------------------------------------------------------- as shown


class SlaPublic(BaseModel):
    first_response_due_at: datetime
    next_response_due_at: datetime | None
    state: SlaState


class CaseSummary(BaseModel):
    """A case as lists and webhooks show it (the detail adds messages and linked requests)."""

    id: str
    number: int
    type: CaseType
    category: Category
    channel: Channel
    status: CaseStatus
    priority: Priority
    queue: Queue
    assignee: str | None
    subject: str
    order_id: str | None
    sla: SlaPublic
    created_at: datetime
    updated_at: datetime


def case_summary(state: CaseState) -> CaseSummary:
    return CaseSummary(
        id=state.case_id,
        number=state.number,
        type=state.type,
        category=state.category,
        channel=state.channel,
        status=state.status,
        priority=state.priority,
        queue=state.queue,
        assignee=state.assignee_id,
        subject=state.subject,
        order_id=state.order_id,
        sla=SlaPublic(
            first_response_due_at=state.first_response_due_at,
            next_response_due_at=state.next_response_due_at,
            state=state.sla_state,
        ),
        created_at=state.created_at,
        updated_at=state.updated_at,
    )
