"""What the facility stores and answers: jobs, their events, and the bodies it accepts.

``Job``, ``SentEvent`` and ``RequestRecord`` are the facility's memory, dumped as they are by
``GET /print-jobs`` and ``GET /_control/requests`` (a request refused by the rate limit is
recorded too, with its 429); ``PrintJobRequest`` is what printflow must send; the rest are the
bodies of the ``/_control/*`` endpoints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["printed", "shipped", "delivered", "returned", "issue"]
IssueKind = Literal["file_quality", "address_invalid", "other"]
JobStatus = Literal["accepted", "on_hold", "canceled"]


def now() -> datetime:
    return datetime.now(UTC)


class Tracking(BaseModel):
    carrier: str
    tracking_code: str
    tracking_url: str


class Issue(BaseModel):
    kind: IssueKind
    description: str = ""


class SentEvent(BaseModel):
    """One event as the facility tried to deliver it, so tests can see retries and failures."""

    event_id: str
    type: EventType
    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    created_at: datetime = Field(default_factory=now)
    delivered_at: datetime | None = None
    last_error: str | None = None


class JobAction(BaseModel):
    at: datetime = Field(default_factory=now)
    action: str
    detail: dict[str, Any] | None = None


class Job(BaseModel):
    job_id: str
    order_id: str
    idempotency_key: str
    facility_id: str
    status: JobStatus = "accepted"
    received_at: datetime = Field(default_factory=now)
    request: dict[str, Any]
    attempts: int = 1
    stage: Literal["printed", "shipped", "delivered"] | None = None
    tracking: Tracking | None = None
    events: list[SentEvent] = Field(default_factory=list)
    history: list[JobAction] = Field(default_factory=list)


class RequestRecord(BaseModel):
    """One ``POST /print-jobs`` as received, with what the facility answered."""

    at: datetime = Field(default_factory=now)
    order_id: str | None
    idempotency_key: str | None
    facility_id: str | None
    status: int
    job_id: str | None = None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PrintFile(_Open):
    type: str
    url: str


class PrintItem(_Open):
    item_reference_id: str
    product_uid: str
    quantity: int = Field(ge=1)
    files: list[PrintFile]
    personalization: dict[str, Any] | None = None


class PrintJobRequest(_Open):
    """What a facility needs to print and ship; extra fields are accepted and kept."""

    order_id: str = Field(min_length=1)
    order_reference_id: str
    facility_id: str | None = None
    items: list[PrintItem] = Field(min_length=1)
    shipping_address: dict[str, Any]


class FailNext(BaseModel):
    status: int = Field(503, ge=400, le=599)
    count: int = Field(1, ge=0)


class RejectOrder(BaseModel):
    order_id: str
    status: int = Field(422, ge=400, le=499)


class RaiseIssue(BaseModel):
    order_id: str
    kind: IssueKind = "other"
    description: str = ""


class SendEvent(BaseModel):
    """Any event, sent now: for what the automatic sequence never does (``returned``, replays)."""

    order_id: str
    type: EventType
    event_id: str | None = None
    tracking: Tracking | None = None
    issue: Issue | None = None


class ConfigPatch(BaseModel):
    """Only the fields given change; ``"max_jobs_per_second": null`` lifts the limit."""

    model_config = ConfigDict(extra="forbid")

    response_delay: float | None = Field(None, ge=0)
    report_events: bool | None = None
    printflow_url: str | None = None
    printed_after: float | None = Field(None, ge=0)
    shipped_after: float | None = Field(None, ge=0)
    delivered_after: float | None = Field(None, ge=0)
    max_jobs_per_second: int | None = Field(None, ge=1)
