"""What the order workflow exchanges with its callers and its activities, in one place.

Every input and output is one pydantic model, so a field can be added later without breaking
orders that are already running. The API sends ``AddressChange``, ``PersonalizationSubmission``
and ``ProductionSignal`` (and the merchant's own ``CancelRequest``/``HoldResolution`` from
``domain.orders``); the workflow sends the rest to its activities and reads their results.
The error types name the activity failures the workflow handles itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from domain.facilities import FacilityInfo
from domain.orders import (
    HoldKind,
    ItemState,
    OrderState,
    ProductionEventIn,
    ShippingAddress,
    TimelineEvent,
)

# ---------------------------------------------------------------------------- from the API


class AddressChange(BaseModel):
    """A new shipping address; ``facility`` is where that address routes (the API routes it)."""

    shipping_address: ShippingAddress
    facility: FacilityInfo


class PersonalizationSubmission(BaseModel):
    """The customer's values for one link: {item_reference_id: {field name: value}}."""

    link_id: str
    values: dict[str, dict[str, str]]
    # The link's number: lets the workflow take a link whose e-mail activity is still running.
    link_seq: int | None = None


class ProductionSignal(BaseModel):
    """What the API signals to the order workflow for a facility event."""

    event: ProductionEventIn
    received_at: datetime


# ---------------------------------------------------------------------------- to activities


class Projection(BaseModel):
    """The order's state and the timeline entries that are new since the last projection."""

    state: OrderState
    new_events: list[TimelineEvent] = []


class IssueLink(BaseModel):
    order_id: str
    merchant_id: str
    support_email: str
    order_reference_id: str
    seq: int  # 1, 2, 3 … per order
    expires_at: datetime
    items: list[ItemState]  # only the items that need personalization
    # None for orders started before Support IDs: the activity reads the order's row.
    support_id: str | None = None


class LinkIssued(BaseModel):
    """What the workflow keeps: never the token, so workflow histories cannot leak it."""

    link_id: str
    seq: int
    expires_at: datetime


class PrintJobItem(BaseModel):
    item_reference_id: str
    product_uid: str
    quantity: int
    files: list[dict[str, str]]
    personalization: dict[str, str] | None = None


class PrintJobRequest(BaseModel):
    order_id: str
    order_reference_id: str
    facility_id: str
    items: list[PrintJobItem]
    shipping_address: ShippingAddress


class PrintJobResult(BaseModel):
    job_id: str


class JobQuery(BaseModel):
    """Which job to ask its facility about."""

    facility_id: str
    job_id: str


class JobTracking(BaseModel):
    model_config = ConfigDict(extra="ignore")

    carrier: str
    tracking_code: str
    tracking_url: str | None = None


class PrintJobState(BaseModel):
    """What a facility says of a job when asked (``GET /print-jobs/{job_id}/state``): its
    ``status`` (``accepted``, ``on_hold``, ``canceled``), how far it got (``stage``: None,
    ``printed``, ``shipped``, ``delivered``) and the package's tracking once shipped. Fields
    a facility adds are ignored."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    status: str = "accepted"
    stage: str | None = None
    tracking: JobTracking | None = None


class FacilityOutcome(BaseModel):
    """How a hold ended, for the facility holding the job: ``resume`` or ``cancel``.

    A resume carries the job as it must be printed now (``job``): the address or files the
    merchant fixed during the hold replace what the facility had before it prints.
    """

    facility_id: str
    job_id: str
    outcome: Literal["resume", "cancel"]
    job: PrintJobRequest | None = None


HoldNoticeKind = Literal["hold", "reminder", "canceled"]


class HoldNotice(BaseModel):
    """An e-mail to the merchant about a hold: the first notice, a reminder, or the cancel."""

    order_id: str
    merchant_id: str
    order_reference_id: str
    support_email: str
    kind: HoldKind
    description: str
    notice: HoldNoticeKind
    reminder_number: int = 0
    respond_by: datetime | None = None
    # None for orders started before Support IDs: the activity reads the order's row.
    support_id: str | None = None
