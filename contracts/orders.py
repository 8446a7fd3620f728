"""What the order workflow exchanges with its callers and its activities, in one place.

Every input and output is one pydantic model, so a field can be added later without breaking
orders that are already running. The API sends ``AddressChange``, ``PersonalizationSubmission``
and ``ProductionSignal`` (and the merchant's own ``CancelRequest``/``HoldResolution`` from
``domain.orders``), in their stored form (``domain.stored``: read leniently, never checked
again, so a rule the API tightens later cannot break a running order); the workflow sends the
rest to its activities and reads their results. The error types name the activity failures
the workflow handles itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from domain.facilities import FacilityInfo
from domain.orders import (
    DeliveryEstimate,
    HoldKind,
    ItemState,
    OrderState,
    ShipPromise,
    StoredAddress,
    StoredProductionEvent,
    TimelineEvent,
)

# ---------------------------------------------------------------------------- from the API


class AddressChange(BaseModel):
    """A new shipping address; ``facility`` is where that address routes (the API routes it),
    ``promise`` the ship-by promise from there (None: an order older than the catalog)."""

    shipping_address: StoredAddress
    facility: FacilityInfo
    promise: ShipPromise | None = None


class PersonalizationSubmission(BaseModel):
    """The customer's values for one link: {item_reference_id: {field name: value}}."""

    link_id: str
    values: dict[str, dict[str, str]]
    # The link's number: lets the workflow take a link whose e-mail activity is still running.
    link_seq: int | None = None


class ProductionSignal(BaseModel):
    """What the API signals to the order workflow for a facility event."""

    event: StoredProductionEvent
    received_at: datetime


# ---------------------------------------------------------------------------- to activities


# The large parts of an order's state: the read model has them as they are unless they changed.
LargePart = Literal["items", "metadata"]
LARGE_PARTS: tuple[LargePart, ...] = ("items", "metadata")


class Projection(BaseModel):
    """The order's state and the timeline entries that are new since the last projection.

    ``slim`` is the state without its large parts that did not change since the run's previous
    projection (``unchanged`` names them; items are then empty, metadata None): the activity
    takes those from the read model, which has them as they are, so a projection weighs a few
    kilobytes however large the order, and the row still ends equal to the workflow's state.
    ``state``, the whole state, is what runs sent before; without it an older activity (one
    that only knows ``state``) cannot read the projection, and retries until a newer one does.
    """

    state: OrderState | None = None
    slim: OrderState | None = None
    unchanged: list[LargePart] = []
    new_events: list[TimelineEvent] = []

    def given(self) -> OrderState:
        """The state as sent: without the ``unchanged`` parts when ``slim``."""
        state = self.slim or self.state
        assert state is not None, "a projection carries a state"
        return state


def without_large_parts(state: OrderState, parts: Sequence[LargePart]) -> OrderState:
    """``state`` (not copied) with ``parts`` left out: items empty, metadata None."""
    empty: dict[str, Any] = {"items": [], "metadata": None}
    return state.model_copy(update={part: empty[part] for part in parts})


def with_large_parts(
    state: OrderState, stored: OrderState, parts: Sequence[LargePart] = LARGE_PARTS
) -> OrderState:
    """``state`` with ``parts`` taken from ``stored`` (the read model's state)."""
    return state.model_copy(update={part: getattr(stored, part) for part in parts})


class UpdateAnswer(OrderState):
    """What an order's Update answers: the order as the change left it, without the large parts
    the read model already has as they are (items empty, metadata None: ``whole_answer`` takes
    them from the row), so an Update repeated a hundred times does not repeat the order in the
    history.

    ``new_events``: the timeline entries that came with the change, when the workflow answered
    before its own projection of it was written (runs since ``ANSWER_BEFORE_PROJECTION`` in
    ``workflows/orders.py``). The answer is then that projection, and the API writes it to the
    read model itself (``activities.order_projection.write_projection``) before it answers the
    merchant; the workflow's projection of the same version, landing first or second, changes
    nothing the other wrote. None: the read model had the change when the Update answered (an
    older run, or a retry of an Update applied in an earlier run).
    """

    new_events: list[TimelineEvent] | None = None

    def projection(self) -> Projection:
        """The projection this answer is (``new_events`` given)."""
        fields = {name: getattr(self, name) for name in OrderState.model_fields}
        unchanged: list[LargePart] = []
        if not self.items:
            unchanged.append("items")
        if self.metadata is None:
            unchanged.append("metadata")
        return Projection(
            slim=OrderState.model_construct(**fields),
            unchanged=unchanged,
            new_events=self.new_events or [],
        )


def update_answer(state: OrderState, projection: Projection | None = None) -> UpdateAnswer:
    """What an order's Update answers: ``projection`` (the one the Update's change went out
    with, not written yet) or, without one, ``state`` as the read model already holds it."""
    if projection is None:
        slim = without_large_parts(state, LARGE_PARTS)
        return UpdateAnswer.model_validate({**dict(slim), "new_events": None})
    answer = {**dict(projection.given()), "new_events": projection.new_events}
    return UpdateAnswer.model_validate(answer)


def whole_answer(answer: OrderState, stored: OrderState) -> OrderState:
    """An Update's answer with the items and metadata of ``stored``, the read model's state
    (as new as the answer or newer), when the answer left them out (an order always has
    items); an answer from a run that sent the whole state is taken as it is."""
    if answer.items:
        return answer
    return with_large_parts(answer, stored)


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
    shipping_address: StoredAddress


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


class FileCheck(BaseModel):
    """One print file to check before the cutoff: the file's place in its item, its URL, and
    the product and print area (the file's ``type``) it is checked against; or a customer's
    image (``product_uid`` None, ``area`` the personalization field)."""

    order_id: str
    item_reference_id: str
    # The file's place in the item's files; -1 for a customer's image.
    index: int
    url: str
    # None: a customer's image, checked for its type and that it can be read (no print area).
    product_uid: str | None
    area: str


class DelayNotice(BaseModel):
    """An e-mail to the merchant: the order was not shipped by its ``ships_by``, and when it
    should ship and arrive now."""

    order_id: str
    merchant_id: str
    order_reference_id: str
    support_email: str
    support_id: str | None = None
    facility_name: str
    ships_by: datetime
    estimated_ships_by: datetime
    delivery_estimate: DeliveryEstimate


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
