"""The order as merchants send it, as the workflow keeps it, and the rules on what may change.

Pure: no I/O and no clock (callers pass ``now``), so the workflow, the API and the tests share
one definition of every rule.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import to_json

from domain.catalog import Currency
from domain.countries import ISO_COUNTRIES, STATE_REQUIRED
from domain.facilities import FacilityInfo
from domain.preflight import FilePreflight
from domain.schedule import next_cutoff
from domain.stored import StoredModel
from domain.text import REFUSED, InputModel, find_control_characters, nesting_depth


class Status(StrEnum):
    PENDING_PERSONALIZATION = "pending_personalization"
    PENDING_APPROVAL = "pending_approval"
    SCHEDULED = "scheduled"
    IN_PRODUCTION = "in_production"
    PRINTED = "printed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    ON_HOLD = "on_hold"
    CANCELED = "canceled"
    RETURNED = "returned"
    FAILED = "failed"


CLOSED = frozenset({Status.DELIVERED, Status.CANCELED, Status.RETURNED, Status.FAILED})
PRODUCED = frozenset({Status.IN_PRODUCTION, Status.PRINTED, Status.SHIPPED, Status.DELIVERED})
EDITABLE = frozenset(
    {Status.PENDING_PERSONALIZATION, Status.PENDING_APPROVAL, Status.SCHEDULED, Status.ON_HOLD}
)


class Action(StrEnum):
    CANCEL = "cancel"
    UPDATE_ADDRESS = "update_address"
    APPROVE = "approve"
    REORDER = "reorder"


Approval = Literal["auto", "manual"]


class EventType(StrEnum):
    """What a timeline entry records; the read model, webhooks and the API match on these."""

    CREATED = "created"
    PERSONALIZATION_LINK_ISSUED = "personalization_link_issued"
    PERSONALIZATION_COMPLETED = "personalization_completed"
    APPROVED = "approved"
    CANCELED = "canceled"
    SHIPPING_ADDRESS_UPDATED = "shipping_address_updated"
    IN_PRODUCTION = "in_production"
    PRINT_JOB_REJECTED = "print_job_rejected"
    PRINTED = "printed"
    SHIPMENT = "shipment"
    DELIVERED = "delivered"
    RETURNED = "returned"
    ON_HOLD = "on_hold"
    HOLD_REMINDER_SENT = "hold_reminder_sent"
    HOLD_RESOLVED = "hold_resolved"
    EVENT_IGNORED = "event_ignored"
    NOTIFICATION_FAILED = "notification_failed"
    CLOSED = "closed"
    # Not shipped by ``ships_by``: the order is late (``OrderState.late``), with a new estimate.
    LATE = "late"
    # The print files' checks ended and every file passed (a failure puts the order on hold).
    FILES_CHECKED = "files_checked"
    # The cutoff came while a file was still being checked: the order waits for the next one.
    CUTOFF_POSTPONED = "cutoff_postponed"


class HoldKind(StrEnum):
    """Why an order is on hold: a facility's issue report, or its refusal of the print job."""

    FILE_QUALITY = "file_quality"
    ADDRESS_INVALID = "address_invalid"
    OTHER = "other"
    FACILITY_REJECTED = "facility_rejected"
    # The merchant's mail server refused the personalization link.
    NOTIFICATION_FAILED = "notification_failed"
    # A print file failed its preflight check, before the cutoff.
    FILE_ISSUE = "file_issue"


class PersonalizationStatus(StrEnum):
    NOT_REQUIRED = "not_required"
    PENDING = "pending"
    COMPLETED = "completed"
    SKIPPED = "skipped"  # the merchant approved without it


class RefusalCode(StrEnum):
    """The ``error.code`` of every 409 an order's state causes (see ``refusal``)."""

    ORDER_CANCELED = "order_canceled"
    ORDER_IN_PRODUCTION = "order_in_production"
    ORDER_FAILED = "order_failed"
    ORDER_NOT_PENDING = "order_not_pending"
    ORDER_ON_HOLD = "order_on_hold"
    ORDER_NOT_PRODUCED = "order_not_produced"
    ORDER_NOT_ON_HOLD = "order_not_on_hold"
    UNKNOWN_ITEMS = "unknown_items"
    ALREADY_PERSONALIZED = "already_personalized"
    LINK_SUPERSEDED = "link_superseded"
    INVALID_PERSONALIZATION = "invalid_personalization"


# ---------------------------------------------------------------------------- input models


def _country(value: str) -> str:
    value = value.upper()
    if value not in ISO_COUNTRIES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, such as 'DE' or 'US'")
    return value


def _email(value: str) -> str:
    # `.test` domains are reserved for testing (RFC 2606) and welcome here: integrations are
    # built against printflow with them. Deliverability is not checked: no DNS at request time.
    try:
        return validate_email(value, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as err:
        raise ValueError(f"not a valid e-mail address: {err}") from None


Email = Annotated[str, AfterValidator(_email)]


def _stripped(max_length: int, min_length: int = 1) -> Any:
    return Field(min_length=min_length, max_length=max_length)


class _Strict(InputModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class ShippingAddress(_Strict):
    """Limits are the carriers' label limits, so an address we accept can be shipped."""

    first_name: str = _stripped(25)
    last_name: str = _stripped(25)
    company: str | None = Field(default=None, max_length=35)
    address_line_1: str = _stripped(35)
    address_line_2: str | None = Field(default=None, max_length=35)
    city: str = _stripped(30)
    state: str | None = Field(default=None, max_length=35)
    post_code: str = _stripped(15)
    country: Annotated[str, AfterValidator(_country)]
    email: Email
    phone: str | None = Field(default=None, max_length=25, pattern=r"^[0-9+()\-. /]*$")

    @model_validator(mode="after")
    def _state_where_carriers_need_it(self) -> ShippingAddress:
        if self.country in STATE_REQUIRED and not self.state:
            raise ValueError(f"state is required for shipping to {self.country}")
        return self


class PrintFile(_Strict):
    type: str = _stripped(32)
    url: HttpUrl


class PersonalizationField(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    label: str = _stripped(120)
    type: Literal["text", "image_url"]
    max_length: int | None = Field(default=None, ge=1, le=10_000)
    required: bool = False


class PersonalizationSpec(_Strict):
    fields: list[PersonalizationField] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique_names(self) -> PersonalizationSpec:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError("personalization field names must be unique within an item")
        return self


class OrderItemIn(_Strict):
    item_reference_id: str = _stripped(64)
    product_uid: str = _stripped(128)
    quantity: int = Field(ge=1, le=1000)
    files: list[PrintFile] = Field(default_factory=list, max_length=20)
    personalization: PersonalizationSpec | None = None


# An order's free-form metadata: levels of objects and arrays, characters (as Python shows it).
METADATA_MAX_DEPTH = 8
METADATA_MAX_CHARS = 4000
# What one order may weigh, so that whatever carries it through Temporal (the workflow's input,
# its state at a continue-as-new, the print job) stays far below the 2 MB a payload may take:
# the items as JSON (files, personalization fields) at most ``ITEMS_MAX_BYTES``; with the
# metadata and the address, an order's body is at most about 192 KiB. The customer's
# personalization values add at most ``PERSONALIZATION_MAX_BYTES``: 256 KiB in all.
ITEMS_MAX_BYTES = 160 * 1024
PERSONALIZATION_MAX_BYTES = 64 * 1024
ORDER_MAX_BYTES = 256 * 1024


def json_size(value: Any) -> int:
    """Bytes of ``value`` (models, lists and dicts of them) as UTF-8 JSON."""
    return len(to_json(value))


def values_size(values: dict[str, dict[str, str]]) -> int:
    """What personalization values weigh: UTF-8 bytes of their field names and values."""
    return sum(
        len(name.encode()) + len(value.encode())
        for fields in values.values()
        for name, value in fields.items()
    )


class OrderCreate(_Strict):
    order_reference_id: str = _stripped(64)
    customer_reference_id: str | None = Field(default=None, max_length=64)
    approval: Approval | None = None
    shipping_address: ShippingAddress
    items: list[OrderItemIn] = Field(min_length=1, max_length=100)
    metadata: dict[str, Any] | None = None
    # The catalog (docs/catalog.md): how it ships (absent: the cheapest method that reaches the
    # country), in which currency it is priced (absent: the quote's, else EUR), and a quote
    # whose prices it keeps while the quote is valid.
    shipping_method: str | None = Field(default=None, min_length=1, max_length=40)
    currency: Currency | None = None
    quote_id: str | None = Field(default=None, min_length=1, max_length=40)

    @field_validator("items")
    @classmethod
    def _items_fit(cls, items: list[OrderItemIn], info: ValidationInfo) -> list[OrderItemIn]:
        """Checked where an order comes in (see ``_metadata_fits``): one accepted before the
        cap must still decode from its workflow's history."""
        if info.mode == "python":
            size = json_size(items)
            if size > ITEMS_MAX_BYTES:
                raise ValueError(
                    f"the items take {size} bytes as JSON, more than the {ITEMS_MAX_BYTES} an "
                    "order may hold (its files' URLs and personalization fields count)"
                )
        return items

    @model_validator(mode="after")
    def _unique_item_references(self) -> OrderCreate:
        refs = [i.item_reference_id for i in self.items]
        if len(refs) != len(set(refs)):
            raise ValueError("item_reference_id must be unique within an order")
        return self

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(
        cls, metadata: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        """Whatever is accepted can run: the workflow's input carries the metadata through
        Temporal's converter, whose JSON reader stops at a nesting depth (about 200), so the
        depth is capped far below that, before anything walks the value.

        The depth is checked where an order comes in (validated from Python objects: the API's
        parsed body, a stored row). Read back from JSON (Temporal's converter decoding a
        workflow's input), an order is taken as it was accepted: one accepted before the cap
        must still decode, and its history replay.
        """
        if metadata is None:
            return None
        if info.mode == "python" and nesting_depth(metadata, METADATA_MAX_DEPTH) > (
            METADATA_MAX_DEPTH
        ):
            raise ValueError(
                f"nested more than {METADATA_MAX_DEPTH} levels deep "
                "(objects and arrays, metadata itself the first)"
            )
        if find_control_characters(metadata):
            raise ValueError(REFUSED)
        if len(str(metadata)) > METADATA_MAX_CHARS:
            raise ValueError(f"limited to {METADATA_MAX_CHARS} characters")
        return metadata


class CancelReasonCode(StrEnum):
    """Why a merchant canceled, as a code other rules can rely on (free text goes in ``reason``).

    Customer contacts depend on it: ``inventory_shortage`` lets the merchant tell the customer
    (``inventory_cancellation``); ``customer_request`` forbids contacting them about it.
    """

    CUSTOMER_REQUEST = "customer_request"
    INVENTORY_SHORTAGE = "inventory_shortage"
    DUPLICATE = "duplicate"
    OTHER = "other"


class CancelRequest(_Strict):
    reason: str | None = Field(default=None, max_length=500)
    # Absent in cancels sent before the codes existed: histories holding them still replay.
    reason_code: CancelReasonCode | None = None


class Tracking(_Strict):
    carrier: str = _stripped(64)
    tracking_code: str = _stripped(128)
    tracking_url: HttpUrl | None = None


class IssueReport(_Strict):
    kind: Literal["file_quality", "address_invalid", "other"]
    description: str = _stripped(2000)


ProductionEventType = Literal["printed", "shipped", "delivered", "returned", "issue"]


class ProductionEventIn(_Strict):
    """A facility's report, as ``POST /v1/production/events`` receives it."""

    event_id: str = _stripped(100)
    order_id: str = _stripped(40)
    type: ProductionEventType
    tracking: Tracking | None = None
    issue: IssueReport | None = None

    @model_validator(mode="after")
    def _payload_fits_type(self) -> ProductionEventIn:
        if self.type == "shipped" and self.tracking is None:
            raise ValueError(
                "a shipped event needs tracking {carrier, tracking_code, tracking_url}"
            )
        if self.type == "issue" and self.issue is None:
            raise ValueError("an issue event needs issue {kind, description}")
        return self


class HoldResolution(_Strict):
    """The merchant's answer to a hold (a new address goes through the address endpoint)."""

    action: Literal["proceed", "replace_files"]
    files: dict[str, list[PrintFile]] | None = Field(
        default=None, description="replace_files: {item_reference_id: [files]}"
    )

    @model_validator(mode="after")
    def _files_for_replace(self) -> HoldResolution:
        if self.action == "replace_files" and not self.files:
            raise ValueError("replace_files needs files for at least one item")
        return self

    @field_validator("files")
    @classmethod
    def _files_fit(
        cls, files: dict[str, list[PrintFile]] | None, info: ValidationInfo
    ) -> dict[str, list[PrintFile]] | None:
        """An order's files stay within what its items may weigh (``ITEMS_MAX_BYTES``)."""
        if files is not None and info.mode == "python":
            size = json_size(files)
            if size > ITEMS_MAX_BYTES:
                raise ValueError(
                    f"the files take {size} bytes as JSON, more than the {ITEMS_MAX_BYTES} an "
                    "order's items may hold"
                )
        return files


# ---------------------------------------------------------------------------- as stored

# What the order's workflow keeps and exchanges of the input models above: the same fields,
# read leniently (``domain.stored``), so a rule the API tightens later never breaks a running
# order's history. A stored model given an input model takes its JSON.


class StoredAddress(StoredModel):
    first_name: str
    last_name: str
    company: str | None = None
    address_line_1: str
    address_line_2: str | None = None
    city: str
    state: str | None = None
    post_code: str
    country: str
    email: str
    phone: str | None = None


class StoredFile(StoredModel):
    type: str
    url: str


class FileState(StoredFile):
    """A print file as the order holds it: with its preflight check (None: orders from before
    the checks existed)."""

    preflight: FilePreflight | None = None


class StoredPersonalizationField(StoredModel):
    name: str
    label: str
    type: str
    max_length: int | None = None
    required: bool = False


class StoredPersonalizationSpec(StoredModel):
    fields: list[StoredPersonalizationField]


class StoredItem(StoredModel):
    item_reference_id: str
    product_uid: str
    quantity: int
    files: list[StoredFile] = []
    personalization: StoredPersonalizationSpec | None = None


class StoredOrder(StoredModel):
    order_reference_id: str
    customer_reference_id: str | None = None
    approval: str | None = None
    shipping_address: StoredAddress
    items: list[StoredItem]
    metadata: dict[str, Any] | None = None
    # As the merchant asked (absent in orders older than the catalog); the quote's id is not
    # kept: what it held is in the order's ``OrderTerms``.
    shipping_method: str | None = None
    currency: str | None = None


class StoredCancel(StoredModel):
    reason: str | None = None
    reason_code: CancelReasonCode | None = None


class StoredTracking(StoredModel):
    carrier: str
    tracking_code: str
    tracking_url: str | None = None


class StoredIssue(StoredModel):
    kind: str
    description: str


class StoredProductionEvent(StoredModel):
    event_id: str
    order_id: str
    type: str
    tracking: StoredTracking | None = None
    issue: StoredIssue | None = None


class StoredHoldResolution(StoredModel):
    action: str
    files: dict[str, list[StoredFile]] | None = None


# ---------------------------------------------------------------------------- workflow state


class TimelineEvent(BaseModel):
    seq: int
    at: datetime
    type: EventType
    detail: dict[str, Any] | str | None = None
    # The status this event moved the order to, when it moved it.
    status: str | None = None


class ItemState(StoredModel):
    item_reference_id: str
    product_uid: str
    quantity: int
    files: list[FileState]
    personalization: StoredPersonalizationSpec | None = None
    personalization_status: PersonalizationStatus = PersonalizationStatus.NOT_REQUIRED
    personalization_values: dict[str, str] | None = None
    # The checks of the customer's images (``image_url`` fields), by field name: whether each
    # can be read and is a type printers take (there is no print area to measure it against).
    image_checks: dict[str, FilePreflight] = Field(default_factory=dict)


class Shipment(BaseModel):
    carrier: str
    tracking_code: str
    tracking_url: str | None = None
    shipped_at: datetime
    # Shipped by the order's ``ships_by``; None for orders without a promise.
    promise_kept: bool | None = None


class Hold(BaseModel):
    kind: HoldKind
    description: str
    since: datetime
    respond_by: datetime | None = None
    reminders_sent: int = 0
    # Where the order goes when the merchant resolves the hold.
    resume_to: Status = Status.IN_PRODUCTION


class Price(StoredModel):
    """What the order costs the merchant, exact (decimal strings in JSON)."""

    currency: str
    items_total: Decimal
    shipping: Decimal
    total: Decimal


class DeliveryEstimate(StoredModel):
    """The window the parcel arrives in: local dates of the facility, both included."""

    earliest: date
    latest: date


class ShipPromise(StoredModel):
    """What ``ships_by`` and the delivery window were computed from, so they can be computed
    again from another cutoff without the catalog or a holiday lookup
    (``domain.quotes.promise_dates``): business days are Monday to Friday in the facility's
    time zone, except ``closed_dates`` (its public holidays, written out when the order came)."""

    production_days: int
    transit_min_days: int
    transit_max_days: int
    closed_dates: list[date] = Field(default_factory=list)


class OrderTerms(StoredModel):
    """What the API agreed with the merchant when the order came (docs/catalog.md): the
    shipping method, the price (None: no price), and the ship-by promise from the first
    cutoff the order could make."""

    shipping_method: str
    price: Price | None = None
    ships_by: datetime
    delivery_estimate: DeliveryEstimate
    promise: ShipPromise
    quote_id: str | None = None
    # A timer watches ``ships_by`` (``OrderWorkflow._watch_promise``). Set by the API for every
    # order it prices; absent in orders priced before the watch existed, whose histories have
    # no such timer and must replay as they were written.
    watch_ships_by: bool = False


class OrderInput(StoredModel):
    """Everything an order workflow starts with; the rules it runs by travel with it."""

    order_id: str
    merchant_id: str
    support_email: str
    approval: Approval
    order: StoredOrder
    facility: FacilityInfo
    received_at: datetime
    personalization_email_delay: timedelta = timedelta(minutes=15)
    personalization_link_ttl: timedelta = timedelta(days=7)
    print_submit_timeout: timedelta = timedelta(seconds=30)
    hold_reminder_interval: timedelta = timedelta(days=1)
    hold_timeout: timedelta = timedelta(days=7)
    delivery_timeout: timedelta = timedelta(days=30)
    # In production or printed with no facility report this long: alert and ask the facility.
    production_report_timeout: timedelta = timedelta(days=3)
    reorder_of: str | None = None
    # ``PF-`` and 8 characters (domain.contact_policy), assigned by the API with the order's row;
    # None in orders started before support IDs existed (the row has one all the same).
    support_id: str | None = None
    # A reprint carries its original's personalization: these items need not wait for it.
    personalization_values: dict[str, dict[str, str]] | None = None
    # The main task queue, whose per-facility queues (``facility_task_queue``) take this
    # order's calls to its facility, so the facility's rate limit holds for them; None (orders
    # started before those queues existed): the workflow's own task queue.
    facility_queue_base: str | None = None
    # The shipping method, price and ship-by promise (None: orders older than the catalog).
    terms: OrderTerms | None = None
    # Whether print files are checked before the cutoff (``PREFLIGHT``); None in orders started
    # before the checks existed, which go on as they did.
    preflight: Literal["on", "off"] | None = None
    # A file still unreachable (or its check still failing) this long fails with
    # ``file_unreachable`` and holds the order.
    preflight_give_up: timedelta = timedelta(minutes=30)
    # The workflow's patches this order starts with (``workflows.orders.PATCHED_AT_START``): its
    # runs take them without recording a marker. Empty in orders started before.
    patched_at_start: list[str] = Field(default_factory=list)
    # Set when the workflow continues as new: the state it carries over.
    state: OrderState | None = None


class OrderState(StoredModel):
    """What the workflow knows about its order; the read model is a projection of it."""

    order_id: str
    merchant_id: str
    order_reference_id: str
    customer_reference_id: str | None
    approval: Approval
    status: Status
    support_id: str | None = None
    shipping_address: StoredAddress
    items: list[ItemState]
    facility: FacilityInfo
    metadata: dict[str, Any] | None = None
    cutoff_at: datetime | None = None
    cancel_reason: str | None = None
    cancel_reason_code: CancelReasonCode | None = None
    job_id: str | None = None
    shipments: list[Shipment] = Field(default_factory=list)
    hold: Hold | None = None
    reorder_of: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 0
    event_seq: int = 0
    # The personalization link now in the merchant's inbox (never its token).
    link_seq: int = 0
    link_id: str | None = None
    link_expires_at: datetime | None = None
    last_shipped_at: datetime | None = None
    # Facility event ids already applied, newest last (bounded): repeats are no-ops.
    seen_event_ids: list[str] = Field(default_factory=list)
    # Digests of the Update ids applied, newest last (bounded), so that a retried Update
    # changes nothing in a later run or once the order closed (``contracts.updates``).
    applied_updates: list[str] = Field(default_factory=list)
    # The catalog's terms (``OrderTerms``); None in orders older than the catalog. ``ships_by``
    # is the instant the parcel should have left the facility, ``promise`` what it was
    # computed from, so a moved cutoff can move it (``domain.quotes.promise_dates``).
    shipping_method: str | None = None
    price: Price | None = None
    ships_by: datetime | None = None
    delivery_estimate: DeliveryEstimate | None = None
    promise: ShipPromise | None = None
    # Not shipped by ``ships_by`` (once set, it stays: the order missed its promise).
    late: bool = False


def initial_status(items: list[ItemState], approval: Approval) -> Status:
    if any(item.personalization_status is PersonalizationStatus.PENDING for item in items):
        return Status.PENDING_PERSONALIZATION
    if approval == "manual":
        return Status.PENDING_APPROVAL
    return Status.SCHEDULED


def _item_state(
    item: StoredItem, carried: dict[str, dict[str, str]], preflight: str | None
) -> ItemState:
    personalization_status, values = PersonalizationStatus.NOT_REQUIRED, None
    if item.personalization is not None:
        values = carried.get(item.item_reference_id)
        personalization_status = (
            PersonalizationStatus.PENDING if values is None else PersonalizationStatus.COMPLETED
        )
    return ItemState(
        item_reference_id=item.item_reference_id,
        product_uid=item.product_uid,
        quantity=item.quantity,
        files=unchecked(item.files, preflight),
        personalization=item.personalization,
        personalization_status=personalization_status,
        personalization_values=values,
    )


def unchecked(files: list[StoredFile], preflight: str | None) -> list[FileState]:
    """New files as they enter the order: to be checked (``pending``), or ``skipped`` where
    checks are off; without a check in orders from before the checks."""
    check = None
    if preflight is not None:
        check = FilePreflight(status="pending" if preflight == "on" else "skipped")
    return [FileState(type=f.type, url=f.url, preflight=check) for f in files]


def new_state(inp: OrderInput) -> OrderState:
    """The order as it is born: what the API stores and the workflow starts from, the same.

    A scheduled order's cutoff is the first after it arrived. The creation is version 1 and
    timeline event 1 (``created_event``), written by the API with the order's row.
    """
    order = inp.order
    items = [_item_state(i, inp.personalization_values or {}, inp.preflight) for i in order.items]
    status = initial_status(items, inp.approval)
    cutoff_at = None
    if status is Status.SCHEDULED:
        schedule, timezone = inp.facility.schedule, inp.facility.timezone
        cutoff_at = next_cutoff(schedule, timezone, inp.received_at)
    return OrderState(
        order_id=inp.order_id,
        merchant_id=inp.merchant_id,
        order_reference_id=order.order_reference_id,
        customer_reference_id=order.customer_reference_id,
        approval=inp.approval,
        support_id=inp.support_id,
        status=status,
        shipping_address=order.shipping_address,
        items=items,
        facility=inp.facility,
        metadata=order.metadata,
        cutoff_at=cutoff_at,
        reorder_of=inp.reorder_of,
        created_at=inp.received_at,
        updated_at=inp.received_at,
        version=1,
        event_seq=1,
        shipping_method=inp.terms.shipping_method if inp.terms else None,
        price=inp.terms.price if inp.terms else None,
        ships_by=inp.terms.ships_by if inp.terms else None,
        delivery_estimate=inp.terms.delivery_estimate if inp.terms else None,
        promise=inp.terms.promise if inp.terms else None,
    )


def created_event(state: OrderState) -> TimelineEvent:
    return TimelineEvent(
        seq=1,
        at=state.created_at,
        type=EventType.CREATED,
        detail={"facility": state.facility.id},
        status=state.status.value,
    )


# ---------------------------------------------------------------------------- what may change


class Refusal(BaseModel):
    code: RefusalCode
    message: str


def refusal(
    action: Action,
    status: Status,
    cutoff_at: datetime | None,
    now: datetime,
    hold: Hold | None = None,
) -> Refusal | None:
    """Why ``action`` is not allowed now, or None when it is.

    The cutoff is checked against ``now`` as well as the status: a request that reaches the
    workflow in the same instant the cutoff timer fires must still be refused.
    """
    if action is Action.REORDER:
        if status in {Status.PRINTED, Status.SHIPPED, Status.DELIVERED, Status.RETURNED}:
            return None
        return Refusal(
            code=RefusalCode.ORDER_NOT_PRODUCED,
            message=f"only printed, shipped, delivered or returned orders can be reordered; "
            f"this order is {status}",
        )
    if status is Status.CANCELED:
        return Refusal(code=RefusalCode.ORDER_CANCELED, message="the order was canceled")
    if status in PRODUCED or status in {Status.RETURNED}:
        return Refusal(
            code=RefusalCode.ORDER_IN_PRODUCTION,
            message=f"the order went to production at the cutoff and is now {status}",
        )
    if status is Status.FAILED:
        return Refusal(code=RefusalCode.ORDER_FAILED, message="the order failed and is closed")
    if status is Status.SCHEDULED and cutoff_at is not None and now >= cutoff_at:
        return Refusal(
            code=RefusalCode.ORDER_IN_PRODUCTION,
            message=f"the production cutoff {cutoff_at.isoformat()} has passed; "
            "the order is being sent to production",
        )
    if action is Action.APPROVE and status not in {
        Status.PENDING_PERSONALIZATION,
        Status.PENDING_APPROVAL,
    }:
        return Refusal(code=RefusalCode.ORDER_NOT_PENDING, message=f"the order is already {status}")
    if (
        action is Action.UPDATE_ADDRESS
        and status is Status.ON_HOLD
        and (hold is None or hold.kind is not HoldKind.ADDRESS_INVALID)
    ):
        return Refusal(
            code=RefusalCode.ORDER_ON_HOLD,
            message="the address can be changed on hold only when the hold is about the address",
        )
    return None


def allowed_actions(
    status: Status, cutoff_at: datetime | None, now: datetime, hold: Hold | None = None
) -> dict[str, bool]:
    return {a.value: refusal(a, status, cutoff_at, now, hold) is None for a in Action}


def editable_until(status: Status, cutoff_at: datetime | None) -> datetime | None:
    """The last moment the order can still be canceled or re-addressed, when one is known."""
    return cutoff_at if status is Status.SCHEDULED else None


OrderInput.model_rebuild()
