"""Portal pages: the shop's orders (docs/portal.md).

- ``GET /portal/orders``: newest first, cursor pages; filters as GET fields: ``status``,
  ``created_from``/``created_to`` (days in the shop's time zone, both included), ``country``,
  ``q`` (an order reference, a Support ID as a customer reads it out, or part of the customer's
  name or e-mail). A filter that makes no sense is the page again with a 400 saying why.
- ``GET /portal/needs-you``: what waits for the shop, newest problem first: holds (file and
  address problems among them), orders waiting for approval, late orders, and customers waiting
  for a reply.
- ``GET /portal/orders/{id}``: everything about one order, and the forms its
  ``allowed_actions`` permit to a role that may change orders.
- ``POST /portal/orders/{id}/cancel``, ``.../address``, ``.../approve``: the API's own
  ``POST /v1/orders/{id}/cancel``, ``PUT .../shipping-address`` and ``POST .../approve``: the
  same services and the same workflow Updates (the form's nonce their id), so the workflow
  alone decides and a refusal changes nothing. Then POST/redirect/GET to the order page.

Resolving a hold, reporting a problem (a reorder) and writing to the customer are forms of
their own module (``order_problems``), which shows the page again after a failure through
``order_view``; the page shows their forms (``portal/_order_*.html``), built here. What both
modules say is ``order_words``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from api.deps import FacilitiesDep, SessionDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.pages.portal import common
from api.pages.portal.order_words import (
    ADDRESS,
    APPROVE,
    CANCEL,
    CLAIM_REASONS,
    CLAIM_WORDS,
    CONTACT,
    CONTACT_WORDS,
    DESCRIPTION_MAX,
    DONE,
    FILES,
    NOT_ANSWERED,
    PHOTOS_MAX,
    PROCEED,
    REORDER,
    STATUS_WORDS,
    refused,
)
from api.schemas import OrderPublic
from api.services import orders, quotes, webhooks
from api.services.orders import OrderSearch
from api.services.portal import Visitor
from contracts.orders import AddressChange
from db.engine import utcnow
from db.models import CustomerContact, Order
from domain.contact_policy import ContactReason, OrderFacts, reasons_for
from domain.contacts import MAX_BODY, MAX_SUBJECT, ContactState, ContactStatus
from domain.countries import ISO_COUNTRIES
from domain.orders import (
    Action,
    CancelReasonCode,
    CancelRequest,
    EventType,
    HoldKind,
    OrderState,
    PersonalizationStatus,
    RefusalCode,
    ShippingAddress,
    Status,
    refusal,
)
from domain.portal import Right, may
from domain.preflight import FilePreflight
from domain.views import ItemPublic
from workflows.orders import OrderWorkflow

log = logging.getLogger("printflow.portal")

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
# Rows of each kind "needs you" reads at most; more is a backlog the order list filters better.
NEEDS_LIMIT = 100
# The webhook deliveries an order's page shows (the Developers page has them all).
DELIVERIES_SHOWN = 20

CANCEL_REASON_WORDS: dict[CancelReasonCode, str] = {
    CancelReasonCode.CUSTOMER_REQUEST: "The customer asked to cancel",
    CancelReasonCode.INVENTORY_SHORTAGE: "Out of stock",
    CancelReasonCode.DUPLICATE: "A duplicate order",
    CancelReasonCode.OTHER: "Another reason",
}

# Why an order is on hold, and what the shop does about it.
HOLD_WORDS: dict[HoldKind, tuple[str, str]] = {
    HoldKind.FILE_ISSUE: (
        "A print file failed its check",
        "Replace the file, or print it as it is; or cancel the order.",
    ),
    HoldKind.FILE_QUALITY: (
        "The facility found a problem with a print file",
        "Replace the file, or tell the facility to print it as it is; or cancel the order.",
    ),
    HoldKind.ADDRESS_INVALID: (
        "The facility cannot ship to the address",
        "Fix the shipping address; or cancel the order.",
    ),
    HoldKind.OTHER: (
        "The facility reported a problem",
        "Read what the facility says, then go ahead or replace the files; or cancel the order.",
    ),
    HoldKind.FACILITY_REJECTED: (
        "The facility refused the print job",
        "Replace the files and send them again, or send the job again as it is; or cancel.",
    ),
    HoldKind.NOTIFICATION_FAILED: (
        "Your mail server refused the personalization e-mail",
        "Check your support e-mail address, then go ahead to send a new link; or cancel.",
    ),
}
FILE_HOLDS = frozenset({HoldKind.FILE_ISSUE, HoldKind.FILE_QUALITY})


def _hold_words(kind: HoldKind) -> tuple[str, str]:
    return HOLD_WORDS.get(kind, ("A person must answer", "Open the order to see what it needs."))


EVENT_WORDS: dict[EventType, str] = {
    EventType.CREATED: "Order received",
    EventType.PERSONALIZATION_LINK_ISSUED: "Personalization link sent to the customer",
    EventType.PERSONALIZATION_COMPLETED: "The customer finished the personalization",
    EventType.APPROVED: "Approved",
    EventType.CANCELED: "Canceled",
    EventType.SHIPPING_ADDRESS_UPDATED: "Shipping address changed",
    EventType.IN_PRODUCTION: "Went to production",
    EventType.PRINT_JOB_REJECTED: "The facility refused the print job",
    EventType.PRINTED: "Printed",
    EventType.SHIPMENT: "Shipped",
    EventType.DELIVERED: "Delivered",
    EventType.RETURNED: "Returned to sender",
    EventType.ON_HOLD: "Put on hold",
    EventType.HOLD_REMINDER_SENT: "Reminder about the hold e-mailed to you",
    EventType.HOLD_RESOLVED: "Hold answered",
    EventType.EVENT_IGNORED: "A facility report that did not fit was ignored",
    EventType.NOTIFICATION_FAILED: "An e-mail could not be sent",
    EventType.CLOSED: "Closed",
    EventType.LATE: "Late: not shipped by the promised time",
    EventType.FILES_CHECKED: "Print files checked: all passed",
    EventType.CUTOFF_POSTPONED: "Cutoff postponed: a print file was still being checked",
}

PERSONALIZATION_WORDS: dict[PersonalizationStatus, str] = {
    PersonalizationStatus.NOT_REQUIRED: "None needed",
    PersonalizationStatus.PENDING: "Waiting for the customer",
    PersonalizationStatus.COMPLETED: "Filled in by the customer",
    PersonalizationStatus.SKIPPED: "Skipped: the order was approved without it",
}

PREFLIGHT_WORDS: dict[str, str] = {
    "pending": "Being checked",
    "passed": "Passed",
    "failed": "Failed",
    "skipped": "Not checked (checks are off)",
}

DELIVERY_WORDS: dict[str, str] = {
    "succeeded": "Delivered",
    "failed": "Failed, will be retried",
    "given_up": "Given up",
}

# What the order list says after signing in from an e-mailed link (``api.pages.portal.auth``).
SIGNED_IN: dict[str, str] = {
    "welcome": "Welcome: your password is set and you are signed in.",
    "password": "Your new password is set and you are signed in.",
}

_REASON_CODES = frozenset(c.value for c in CancelReasonCode)

# The address form's fields: name, label, required, maximum length, autocomplete token.
ADDRESS_FIELDS: tuple[tuple[str, str, bool, int, str], ...] = (
    ("first_name", "First name", True, 25, "given-name"),
    ("last_name", "Last name", True, 25, "family-name"),
    ("company", "Company (optional)", False, 35, "organization"),
    ("address_line_1", "Street and number", True, 35, "address-line1"),
    ("address_line_2", "Address line 2 (optional)", False, 35, "address-line2"),
    ("city", "City", True, 30, "address-level2"),
    ("state", "State or province (needed for US, CA and AU)", False, 35, "address-level1"),
    ("post_code", "Post code", True, 15, "postal-code"),
    ("country", "Country (2 letters, such as DE or US)", True, 2, "country"),
    ("email", "Customer's e-mail address", True, 320, "email"),
    ("phone", "Phone (optional)", False, 25, "tel"),
)
_LABELS = {name: label.removesuffix(" (optional)") for name, label, *_ in ADDRESS_FIELDS}

# What going on as it is means for each kind of hold, as the button and its hint say it.
PROCEED_WORDS: dict[HoldKind, tuple[str, str]] = {
    HoldKind.FILE_ISSUE: (
        "Print the files as they are",
        "The files that failed the check are printed anyway; the order keeps what the check found.",
    ),
    HoldKind.FILE_QUALITY: (
        "Print it as it is",
        "The facility prints the files it has, with the problem it reported.",
    ),
    HoldKind.OTHER: (
        "Go ahead as it is",
        "The facility goes on with the order as it is.",
    ),
    HoldKind.FACILITY_REJECTED: (
        "Send the print job again as it is",
        "The job goes to the facility again at once, unchanged.",
    ),
    HoldKind.NOTIFICATION_FAILED: (
        "Send a new personalization link",
        "A new link is e-mailed to the customer (and sent to your webhook). Check your support "
        "e-mail address with printflow first, or it may be refused again.",
    ),
}
# Holds answered with new files, as the hold e-mail offers (not an address or a mail problem).
REPLACEABLE = frozenset(
    {HoldKind.FILE_ISSUE, HoldKind.FILE_QUALITY, HoldKind.OTHER, HoldKind.FACILITY_REJECTED}
)

# ---------------------------------------------------------------------------- the list

# Statuses in which a late order no longer waits for anything.
_NO_LONGER_LATE = frozenset(
    {Status.SHIPPED, Status.DELIVERED, Status.CANCELED, Status.RETURNED, Status.FAILED}
)


# The days the "created" filters take: every order is well within them.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(9998, 12, 31)


class _BadFilter(Exception):
    """A filter of the order list that makes no sense: the message says which and why."""


def _day(value: str, label: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise _BadFilter(
            f"{label}: “{value[:40]}” is not a date; use the form 2025-03-31."
        ) from None
    # Midnight of the day after the last one, in any time zone, is still a datetime.
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _BadFilter(f"{label}: choose a day from {FIRST_DAY} to {LAST_DAY}.")
    return day


def _start_of(day: date, visitor: Visitor) -> datetime:
    """Midnight at the start of ``day`` in the shop's time zone, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=common.zone(visitor)).astimezone(UTC)


def _read_filters(params: dict[str, str], visitor: Visitor) -> tuple[OrderSearch, int, str | None]:
    """The search, the page size and the cursor a request asks for, or ``_BadFilter``."""
    status = None
    if params.get("status"):
        try:
            status = Status(params["status"])
        except ValueError:
            raise _BadFilter("Status: choose one of the statuses in the list.") from None
    created_from = created_before = None
    start = end = None
    if params.get("created_from"):
        start = _day(params["created_from"], "Created from")
        created_from = _start_of(start, visitor)
    if params.get("created_to"):
        end = _day(params["created_to"], "Created to")
        created_before = _start_of(end + timedelta(days=1), visitor)
    if start is not None and end is not None and start > end:
        raise _BadFilter("Created from must be on or before Created to.")
    country = None
    if params.get("country"):
        country = params["country"].strip().upper()
        if country not in ISO_COUNTRIES:
            raise _BadFilter(
                f"Country: “{params['country'][:40]}” is not a country code; use its two "
                "letters, such as DE or US."
            )
    text = params.get("q", "").strip() or None
    if text is not None and len(text) > 200:
        raise _BadFilter("Search: at most 200 characters.")
    limit = PAGE_SIZE
    if params.get("limit"):
        try:
            limit = int(params["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise _BadFilter(f"Orders per page: a number from 1 to {MAX_PAGE_SIZE}.")
    search = OrderSearch(
        status=status,
        created_from=created_from,
        created_before=created_before,
        country=country,
        text=text,
    )
    return search, limit, params.get("cursor") or None


_FILTER_NAMES = ("q", "status", "created_from", "created_to", "country", "limit")


@router.get("/orders", response_class=HTMLResponse)
async def orders_page(request: Request, db: SessionDep) -> Response:
    visitor = await common.enter(request, db, Right.ORDERS_READ)
    if isinstance(visitor, Response):
        return visitor
    params = {k: v[:1000] for k, v in request.query_params.items()}
    shown = {name: params.get(name, "") for name in _FILTER_NAMES}
    context: dict[str, Any] = {
        "filters": shown,
        "filtered": any(shown[n] for n in _FILTER_NAMES if n != "limit"),
        "statuses": [(s.value, words) for s, words in STATUS_WORDS.items()],
        "rows": [],
        "next_url": None,
        "paged": False,
        "notice": common.notice(request, SIGNED_IN),
    }
    try:
        search, limit, cursor = _read_filters(params, visitor)
        states, next_cursor = await orders.search_orders(
            db, visitor.merchant, search, limit=limit, cursor=cursor
        )
    except _BadFilter as err:
        context.update(problem=str(err), problem_title="These filters cannot be used")
        return common.page(request, visitor, "portal/orders.html", context, 400)
    except ApiError:  # a cursor the portal did not make
        context.update(
            problem="This page's link is broken: start again from the first page.",
            problem_title="This page cannot be shown",
        )
        return common.page(request, visitor, "portal/orders.html", context, 400)
    kept = {n: shown[n] for n in _FILTER_NAMES if shown[n]}
    context.update(
        rows=[_row(visitor, s) for s in states],
        paged=cursor is not None,
        first_url="/portal/orders" + (f"?{urlencode(kept)}" if kept else ""),
        next_url=(
            f"/portal/orders?{urlencode({**kept, 'cursor': next_cursor})}" if next_cursor else None
        ),
    )
    return common.page(request, visitor, "portal/orders.html", context)


def _row(visitor: Visitor, state: OrderState) -> dict[str, Any]:
    address = state.shipping_address
    return {
        "id": state.order_id,
        "reference": state.order_reference_id,
        "support_id": state.support_id or "",
        "status": STATUS_WORDS[state.status],
        "customer": f"{address.first_name} {address.last_name}",
        "country": address.country,
        "created": common.at(visitor, state.created_at),
        "late": _late(state.late, state.status),
    }


def _late(late: bool, status: Status) -> bool:
    """Late, and neither shipped nor closed: the customer is still waiting for it."""
    return late and status not in _NO_LONGER_LATE


# ---------------------------------------------------------------------------- needs you


@router.get("/needs-you", response_class=HTMLResponse)
async def needs_you_page(request: Request, db: SessionDep) -> Response:
    visitor = await common.enter(request, db, Right.ORDERS_READ)
    if isinstance(visitor, Response):
        return visitor
    now = utcnow()
    rows, capped = await _needs(db, visitor, now)
    context = {
        "rows": rows,
        "capped": capped,
        "limit": NEEDS_LIMIT,
        "messages_shown": may(visitor.user.role, Right.MESSAGES),
    }
    return common.page(request, visitor, "portal/needs_you.html", context)


async def _needs(
    db: AsyncSession, visitor: Visitor, now: datetime
) -> tuple[list[dict[str, Any]], bool]:
    """Every row of "needs you", newest problem first, and whether a kind had more rows than
    ``NEEDS_LIMIT``."""
    merchant_id = visitor.merchant.id
    waiting = (
        select(Order)
        .where(
            Order.merchant_id == merchant_id,
            col(Order.status).in_([Status.ON_HOLD.value, Status.PENDING_APPROVAL.value]),
        )
        .order_by(col(Order.created_at).desc(), col(Order.id).desc())
        .limit(NEEDS_LIMIT)
    )
    # Late: the promise passed unshipped (the workflow marks it ``late`` then).
    overdue = (
        select(Order)
        .where(
            Order.merchant_id == merchant_id,
            col(Order.ships_by) <= now,
            col(Order.shipped_at).is_(None),
            col(Order.status).not_in([s.value for s in _NO_LONGER_LATE]),
        )
        .order_by(col(Order.ships_by).desc())
        .limit(NEEDS_LIMIT)
    )
    waiting_rows = list(await db.exec(waiting))
    overdue_rows = list(await db.exec(overdue))
    capped = NEEDS_LIMIT in (len(waiting_rows), len(overdue_rows))
    rows: list[dict[str, Any]] = []
    for row in waiting_rows:
        state = OrderState.model_validate(row.state)
        if state.status is Status.ON_HOLD and state.hold is not None:
            what, todo = _hold_words(state.hold.kind)
            rows.append(
                _need(
                    visitor,
                    "file" if state.hold.kind in FILE_HOLDS else "hold",
                    "File problem" if state.hold.kind in FILE_HOLDS else "On hold",
                    what,
                    todo,
                    state.hold.since,
                    _order_link(state),
                    detail=state.hold.description,
                    due=state.hold.respond_by,
                    due_words="Canceled without an answer",
                )
            )
        elif state.status is Status.PENDING_APPROVAL:
            rows.append(
                _need(
                    visitor,
                    "approval",
                    "Waiting for approval",
                    "You approve this shop's orders by hand",
                    "Check the order, then approve it (or cancel it).",
                    row.updated_at,
                    _order_link(state),
                )
            )
    for row in overdue_rows:
        state = OrderState.model_validate(row.state)
        if not _late(state.late, state.status) or state.ships_by is None:
            continue
        rows.append(
            _need(
                visitor,
                "late",
                "Late",
                "Not shipped by the promised time",
                "The customer may ask where it is: the order's timeline has the new estimate.",
                state.ships_by,
                _order_link(state),
            )
        )
    if may(visitor.user.role, Right.MESSAGES):
        contacts, more = await _waiting_contacts(db, visitor)
        rows.extend(contacts)
        capped = capped or more
    rows.sort(key=lambda r: r["since_at"], reverse=True)
    return rows, capped


def _need(
    visitor: Visitor,
    kind: str,
    label: str,
    what: str,
    todo: str,
    since: datetime,
    link: tuple[str, str, str],
    *,
    detail: str | None = None,
    due: datetime | None = None,
    due_words: str | None = None,
) -> dict[str, Any]:
    """A row of "needs you": ``link`` is where it leads, its title and what tells it apart."""
    href, title, sub = link
    return {
        "kind": kind,
        "label": label,
        "what": what,
        "detail": detail,
        "todo": todo,
        "href": href,
        "title": title,
        "sub": sub,
        "since_at": since,
        "since": common.at(visitor, since),
        "due": common.at(visitor, due),
        "due_words": due_words,
    }


def _order_link(state: OrderState) -> tuple[str, str, str]:
    address = state.shipping_address
    return (
        f"/portal/orders/{state.order_id}",
        f"Order {state.order_reference_id}",
        f"{state.support_id or ''} · {address.first_name} {address.last_name}".strip(" ·"),
    )


async def _waiting_contacts(
    db: AsyncSession, visitor: Visitor
) -> tuple[list[dict[str, Any]], bool]:
    """Conversations whose customer wrote last and waits for the shop (a reply clock runs)."""
    found = list(
        await db.exec(
            select(CustomerContact)
            .where(
                CustomerContact.merchant_id == visitor.merchant.id,
                CustomerContact.status == ContactStatus.OPEN.value,
                col(CustomerContact.reply_due_at).is_not(None),
            )
            .order_by(col(CustomerContact.created_at).desc(), col(CustomerContact.id).desc())
            .limit(NEEDS_LIMIT)
        )
    )
    references = await common.references(db, visitor, [c.order_id for c in found])
    rows = []
    for contact in found:
        state = ContactState.model_validate(contact.state)
        since = state.clock.started_at if state.clock is not None else contact.updated_at
        reference = references.get(contact.order_id) or contact.support_id
        rows.append(
            _need(
                visitor,
                "message",
                "Customer waiting",
                f"The customer wrote in “{contact.subject}”",
                "Reply to the customer.",
                since,
                (
                    f"/portal/messages/{contact.id}",
                    f"Conversation about order {reference}",
                    contact.support_id,
                ),
                due=contact.reply_due_at,
                due_words="Reply by",
            )
        )
    return rows, len(found) == NEEDS_LIMIT


# ---------------------------------------------------------------------------- one order


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(request: Request, order_id: str, db: SessionDep) -> Response:
    entered = await common.enter_about(
        request, db, Right.ORDERS_READ, "Order", lambda v: orders.get_row(db, v.merchant, order_id)
    )
    if isinstance(entered, Response):
        return entered
    visitor, row = entered
    return await order_view(request, db, visitor, row, 200, notice=common.notice(request, DONE))


async def order_view(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    row: Order,
    status_code: int,
    *,
    notice: str | None = None,
    problem: str | None = None,
    failed_form: str | None = None,
    values: dict[str, Any] | None = None,
    nonce: str | None = None,
    invalid: str | None = None,
) -> Response:
    """The order page, with the forms its ``allowed_actions`` permit to the visitor's role:
    this module's and ``order_problems``'. After a form failed: ``problem`` says why, and
    ``failed_form`` names the form, shown again with ``values`` (what was sent), the field at
    fault (``invalid``) and ``nonce`` (the one sent after a 5xx, so that sending it again is
    the same change; None after a refusal, a new one)."""
    order = await orders.render(db, OrderState.model_validate(row.state))
    now = utcnow()
    deliveries = await webhooks.list_deliveries(
        db, visitor.merchant, event_id=None, order_id=order.id, limit=DELIVERIES_SHOWN, cursor=None
    )

    def form(name: str) -> dict[str, Any]:
        """A form of the page: its nonce and, when it is the one that failed, what was sent."""
        failed = name == failed_form
        return {
            "nonce": (nonce if failed else None) or common.new_nonce(),
            "sent": (values or {}) if failed else {},
            "invalid": invalid if failed else None,
        }

    can_act = may(visitor.user.role, Right.ORDERS_ACT)
    allowed = order.allowed_actions
    context: dict[str, Any] = {
        "order": order.model_dump(mode="json"),
        "can_act": can_act,
        "view": _view(visitor, order, now),
        "timeline": [_event(visitor, e.type, e.at, e.detail) for e in order.events],
        "items": [_item(i) for i in order.items],
        "shipments": [
            {
                "carrier": s.carrier,
                "code": s.tracking_code,
                "url": _web_link(s.tracking_url),
                "at": common.at(visitor, s.shipped_at),
                "kept": s.promise_kept,
            }
            for s in order.shipments
        ],
        "deliveries": [
            {
                "at": common.at(visitor, d.at),
                "event_type": d.event_type,
                "attempt": d.attempt,
                "outcome": DELIVERY_WORDS.get(d.outcome, d.outcome),
                "answer": f"HTTP {d.status_code}" if d.status_code else (d.error or "no answer"),
            }
            for d in deliveries.data
        ],
        "more_deliveries": deliveries.next_cursor is not None,
        "deliveries_shown": DELIVERIES_SHOWN,
        "may_developers": may(visitor.user.role, Right.DEVELOPERS),
        # The forms the visitor may send now; None for the others.
        "approve": form(APPROVE) if can_act and allowed.approve else None,
        "address": _address(order, form(ADDRESS)) if can_act and allowed.update_address else None,
        "cancel": _cancel(form(CANCEL)) if can_act and allowed.cancel else None,
        "hold": _hold(order, form(PROCEED), form(FILES)) if can_act else None,
        "reorder": _reorder(order, form(REORDER)) if can_act else None,
        "contact": (
            _contact(order, form(CONTACT)) if may(visitor.user.role, Right.MESSAGES) else None
        ),
        "notice": notice,
        "problem": problem,
    }
    return common.page(request, visitor, "portal/order.html", context, status_code)


def _cancel(form: dict[str, Any]) -> dict[str, Any]:
    sent = form["sent"]
    return {
        **form,
        "reasons": [(c.value, words) for c, words in CANCEL_REASON_WORDS.items()],
        "reason_code": sent.get("reason_code", ""),
        "reason": sent.get("reason", ""),
    }


def _address(order: OrderPublic, form: dict[str, Any]) -> dict[str, Any]:
    """The address form: the order's address, or what was sent when it failed."""
    now = order.shipping_address.model_dump()
    values = form["sent"] or {name: str(now.get(name) or "") for name, *_ in ADDRESS_FIELDS}
    return {
        **form,
        "fields": [
            {
                "name": name,
                "label": label,
                "required": required,
                "maxlength": maxlength,
                "autocomplete": autocomplete,
                "value": values.get(name, ""),
            }
            for name, label, required, maxlength, autocomplete in ADDRESS_FIELDS
        ],
    }


def _hold(
    order: OrderPublic, proceed: dict[str, Any], files: dict[str, Any]
) -> dict[str, Any] | None:
    """The answers to the order's hold: going on as it is, new print files (for a hold about
    them), or (for an address hold) the address form."""
    hold = order.hold
    if order.status is not Status.ON_HOLD or hold is None:
        return None
    words = PROCEED_WORDS.get(hold.kind)
    items = [
        {
            "reference": item.item_reference_id,
            "product": item.product_uid,
            "files": [
                {
                    "name": f"file-{i}-{j}",
                    "number": j + 1,
                    "type": f.type,
                    "url": str(f.url),
                    "value": files["sent"].get(f"file-{i}-{j}", ""),
                }
                for j, f in enumerate(item.files)
            ],
        }
        for i, item in enumerate(order.items)
        if item.files
    ]
    return {
        "address": hold.kind is HoldKind.ADDRESS_INVALID,
        "can_cancel": order.allowed_actions.cancel,
        "proceed": {**proceed, "label": words[0], "hint": words[1]} if words else None,
        "files": {**files, "by_item": items} if hold.kind in REPLACEABLE and items else None,
    }


def _reorder(order: OrderPublic, form: dict[str, Any]) -> dict[str, Any] | None:
    """Reporting a problem with what arrived: a reprint of the chosen items with a claim."""
    if not order.allowed_actions.reorder:
        return None
    sent = form["sent"]
    chosen = sent.get("items")
    one = len(order.items) == 1
    return {
        **form,
        "choices": [
            {
                "reference": item.item_reference_id,
                "product": item.product_uid,
                "quantity": item.quantity,
                "checked": item.item_reference_id in chosen if chosen is not None else one,
            }
            for item in order.items
        ],
        "reasons": [
            {
                "value": reason,
                "label": CLAIM_WORDS.get(reason, (reason, ""))[0],
                "hint": CLAIM_WORDS.get(reason, ("", ""))[1],
            }
            for reason in CLAIM_REASONS
        ],
        "reason": sent.get("reason", ""),
        "description": sent.get("description", ""),
        "photo_urls": sent.get("photo_urls", ""),
        "description_max": DESCRIPTION_MAX,
        "photos_max": PHOTOS_MAX,
    }


def _contact(order: OrderPublic, form: dict[str, Any]) -> dict[str, Any]:
    """Writing to the customer, about the reasons the contact policy lets this order be written
    about."""
    facts = OrderFacts(
        status=order.status,
        hold_kind=order.hold.kind if order.hold is not None else None,
        cancel_reason_code=order.cancel_reason_code,
    )
    sent = form["sent"]
    fitting = reasons_for(facts)
    return {
        **form,
        "support_id": order.support_id,
        "customer_canceled": order.status is Status.CANCELED
        and order.cancel_reason_code is CancelReasonCode.CUSTOMER_REQUEST,
        "reasons": [
            {
                "value": r,
                "label": CONTACT_WORDS[ContactReason(r)][0],
                "checked": sent.get("reason") == r or (len(fitting) == 1 and not sent),
            }
            for r in fitting
        ],
        "all_reasons": [{"label": label, "fits": fits} for label, fits in CONTACT_WORDS.values()],
        "email": order.shipping_address.email,
        "subject": sent.get("subject", f"Your order {order.order_reference_id}"),
        "body": sent.get("body", ""),
        "max_subject": MAX_SUBJECT,
        "max_body": MAX_BODY,
    }


def _view(visitor: Visitor, order: OrderPublic, now: datetime) -> dict[str, Any]:
    """The order's facts in words and times."""
    address = order.shipping_address
    hold = None
    if order.hold is not None:
        what, todo = _hold_words(order.hold.kind)
        hold = {
            "what": what,
            "todo": todo,
            "description": order.hold.description,
            "since": common.at(visitor, order.hold.since),
            "respond_by": common.at(visitor, order.hold.respond_by),
        }
    price = order.price
    estimate = order.delivery_estimate
    return {
        "status": STATUS_WORDS[order.status],
        "late": _late(order.late, order.status),
        "was_late": order.late,
        "customer": f"{address.first_name} {address.last_name}",
        "created": common.at(visitor, order.created_at),
        "cutoff": common.at(visitor, order.cutoff_at),
        "editable_until": common.at(visitor, order.editable_until),
        "ships_by": common.at(visitor, order.ships_by),
        "estimate": (
            {"earliest": _date(estimate.earliest), "latest": _date(estimate.latest)}
            if estimate is not None
            else None
        ),
        "price": (
            {
                "total": f"{price.total} {price.currency}",
                "items_total": f"{price.items_total} {price.currency}",
                "shipping": f"{price.shipping} {price.currency}",
            }
            if price is not None
            else None
        ),
        "hold": hold,
        "cancel_reason_code": (
            CANCEL_REASON_WORDS.get(order.cancel_reason_code) if order.cancel_reason_code else None
        ),
        "locked": _locked(visitor, order, now),
        "address_on_hold": (
            order.status is Status.ON_HOLD
            and order.allowed_actions.cancel
            and not order.allowed_actions.update_address
        ),
    }


def _locked(visitor: Visitor, order: OrderPublic, now: datetime) -> dict[str, Any] | None:
    """Why the order can no longer be canceled or changed, in words, with the moment it
    happened; None while it can."""
    why = refusal(Action.CANCEL, order.status, order.cutoff_at, now, order.hold)
    if why is None:
        return None

    def when(kind: EventType) -> datetime | None:
        times = [e.at for e in order.events if e.type is kind]
        return times[-1] if times else None

    if why.code is RefusalCode.ORDER_CANCELED:
        return {
            "lead": "This order was canceled",
            "at": common.at(visitor, when(EventType.CANCELED)),
            "rest": "it can no longer be changed.",
        }
    if why.code is RefusalCode.ORDER_IN_PRODUCTION:
        if order.status is Status.SCHEDULED:
            return {
                "lead": "This order's production cutoff passed",
                "at": common.at(visitor, order.cutoff_at),
                "rest": "it is going to production and can no longer be canceled or changed.",
            }
        went = when(EventType.IN_PRODUCTION) or order.cutoff_at
        return {
            "lead": "This order went to production",
            "at": common.at(visitor, went),
            "rest": "it can no longer be canceled or changed.",
        }
    return {"lead": "This order failed and is closed", "at": None, "rest": "it cannot change."}


def _date(day: date) -> dict[str, str]:
    """A day as ``<time>`` shows it."""
    return {"iso": day.isoformat(), "words": day.strftime("%a %d %b %Y")}


def _web_link(url: str | None) -> str | None:
    """``url`` when a browser may open it as a link (http or https), else None."""
    if url and url.lower().startswith(("https://", "http://")):
        return url
    return None


def _event(visitor: Visitor, kind: EventType, at: datetime, detail: Any) -> dict[str, Any]:
    words = EVENT_WORDS.get(kind, kind.value.replace("_", " ").capitalize())
    return {"words": words, "at": common.at(visitor, at), "note": _note(kind, detail)}


def _note(kind: EventType, detail: Any) -> str | None:
    """What a timeline entry adds, in words, when it adds something a person needs."""
    if isinstance(detail, str):
        return detail[:300]
    if not isinstance(detail, dict):
        return None
    if kind is EventType.CANCELED:
        code = detail.get("reason_code")
        parts = [CANCEL_REASON_WORDS[CancelReasonCode(code)]] if code in _REASON_CODES else []
        if detail.get("reason"):
            parts.append(str(detail["reason"]))
        return ": ".join(parts) or None
    if kind is EventType.SHIPPING_ADDRESS_UPDATED and detail.get("country"):
        return f"Now to {detail['country']}"
    if kind is EventType.SHIPMENT and detail.get("tracking_code"):
        return f"{detail.get('carrier', '')} {detail['tracking_code']}".strip()
    for key in ("description", "reason", "why"):
        if isinstance(detail.get(key), str):
            return str(detail[key])[:300]
    return None


def _item(item: ItemPublic) -> dict[str, Any]:
    personalization = item.personalization
    return {
        "reference": item.item_reference_id,
        "product": item.product_uid,
        "quantity": item.quantity,
        "files": [
            {
                "type": f.type,
                "url": f.url,
                "link": _web_link(f.url),
                "check": _check(f.preflight),
            }
            for f in item.files
        ],
        "personalization": (
            {
                "status": PERSONALIZATION_WORDS[personalization.status],
                "fields": [
                    {
                        "label": str(field.get("label") or field.get("name") or ""),
                        "value": (personalization.values or {}).get(str(field.get("name"))),
                        "check": _check(personalization.image_checks.get(str(field.get("name")))),
                    }
                    for field in personalization.fields
                    if isinstance(field, dict)
                ],
            }
            if personalization is not None
            else None
        ),
    }


def _check(preflight: FilePreflight | None) -> dict[str, Any] | None:
    if preflight is None:
        return None
    words = PREFLIGHT_WORDS.get(preflight.status, preflight.status)
    if preflight.status == "failed" and preflight.proceeded:
        words = "Failed; you chose to print it as it is"
    return {
        "status": preflight.status,
        "words": words,
        "problems": [
            {"message": c.message, "found": c.found, "needed": c.needed} for c in preflight.checks
        ],
    }


# ---------------------------------------------------------------------------- the forms


@router.post("/orders/{order_id}/cancel", response_class=HTMLResponse)
async def cancel(
    request: Request, order_id: str, db: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> Response:
    entered = await order_form(request, db, order_id, Right.ORDERS_ACT)
    if isinstance(entered, Response):
        return entered
    visitor, form, row, nonce = entered
    values = {name: (common.text(form, name) or "").strip() for name in ("reason_code", "reason")}

    async def run() -> Response:
        if values["reason_code"] not in _REASON_CODES:
            raise common.Invalid("reason_code", "Choose why the order is canceled.")
        try:
            body = CancelRequest(
                reason=values["reason"] or None, reason_code=CancelReasonCode(values["reason_code"])
            )
        except ValidationError as err:
            raise common.Invalid("reason", _first_error(err, {"reason": "Note"})) from None
        await orders.update_order(
            db,
            temporal,
            settings,
            row,
            Action.CANCEL,
            OrderWorkflow.cancel,
            body,
            idempotency_key=common.update_key(nonce),
        )
        return common.done(f"/portal/orders/{order_id}", "canceled")

    return await change_order(request, db, visitor, row, CANCEL, run, values, nonce)


@router.post("/orders/{order_id}/address", response_class=HTMLResponse)
async def change_address(
    request: Request,
    order_id: str,
    db: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    facilities: FacilitiesDep,
) -> Response:
    entered = await order_form(request, db, order_id, Right.ORDERS_ACT)
    if isinstance(entered, Response):
        return entered
    visitor, form, row, nonce = entered
    values = {name: (common.text(form, name) or "").strip() for name, *_ in ADDRESS_FIELDS}

    async def run() -> Response:
        try:
            # An empty optional field is an absent one; an empty required one, a missing one.
            address = ShippingAddress.model_validate({k: v for k, v in values.items() if v})
        except ValidationError as err:
            raise common.Invalid(_field_of(err), _first_error(err, _LABELS)) from None
        # As ``PUT /v1/orders/{id}/shipping-address``: a new country may route the order to
        # another facility, with its own cutoff and ship-by promise.
        facility, promise = quotes.readdressed(
            settings, facilities, OrderState.model_validate(row.state), address.country, utcnow()
        )
        await orders.update_order(
            db,
            temporal,
            settings,
            row,
            Action.UPDATE_ADDRESS,
            OrderWorkflow.update_shipping_address,
            AddressChange(shipping_address=address, facility=facility.info(), promise=promise),
            idempotency_key=common.update_key(nonce),
        )
        return common.done(f"/portal/orders/{order_id}", "address")

    return await change_order(request, db, visitor, row, ADDRESS, run, values, nonce)


@router.post("/orders/{order_id}/approve", response_class=HTMLResponse)
async def approve(
    request: Request, order_id: str, db: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> Response:
    entered = await order_form(request, db, order_id, Right.ORDERS_ACT)
    if isinstance(entered, Response):
        return entered
    visitor, form, row, nonce = entered

    async def run() -> Response:
        await orders.update_order(
            db,
            temporal,
            settings,
            row,
            Action.APPROVE,
            OrderWorkflow.approve,
            idempotency_key=common.update_key(nonce),
        )
        return common.done(f"/portal/orders/{order_id}", "approved")

    return await change_order(request, db, visitor, row, APPROVE, run, None, nonce)


async def order_form(
    request: Request, db: AsyncSession, order_id: str, right: Right
) -> tuple[Visitor, FormData, Order, str | None] | Response:
    """A form about one of the visitor's orders (``common.enter_form_about``): the visitor,
    the form, the order's row and the form's nonce, or the answer to send instead."""
    entered = await common.enter_form_about(
        request, db, right, "Order", lambda v: orders.get_row(db, v.merchant, order_id)
    )
    if isinstance(entered, Response):
        return entered
    visitor, form, row = entered
    return visitor, form, row, common.nonce_of(form)


async def change_order(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    row: Order,
    form_name: str,
    run: Callable[[], Awaitable[Response]],
    values: dict[str, Any] | None,
    nonce: str | None,
) -> Response:
    """Runs the change of an order page's form (``common.attempt``): back to the order page,
    or the page again saying why nothing changed, or that the change may not have been made,
    with the form as it was sent."""
    order_id = row.id
    try:
        failed = await common.attempt(
            db,
            visitor,
            f"{form_name} of order {order_id}",
            run,
            unanswered=NOT_ANSWERED,
            words=lambda err: NOT_ANSWERED if err.status_code >= 500 else refused(err),
            reload=(row,),
        )
        if isinstance(failed, Response):
            return failed
        return await order_view(
            request,
            db,
            visitor,
            row,
            failed.status,
            problem=failed.problem,
            failed_form=form_name,
            values=values,
            nonce=failed.nonce(nonce),
            invalid=failed.field,
        )
    except Exception:  # the change failed, and the database is gone too: say so without the order
        log.exception("the portal could not show order %s after a failed change", order_id)
        return common.message(
            request,
            None,
            503,
            "The change may not have been made",
            [NOT_ANSWERED],
            back=(f"/portal/orders/{order_id}", "Back to the order"),
        )


def _field_of(err: ValidationError) -> str | None:
    """The form field the first problem is about (the address's own rule: the state)."""
    loc = err.errors()[0].get("loc") or ()
    return str(loc[0]) if loc else "state"


def _first_error(err: ValidationError, labels: dict[str, str]) -> str:
    """The first problem of a form, as a sentence naming its field."""
    first = err.errors()[0]
    loc = first.get("loc") or ()
    label = labels.get(str(loc[0]), str(loc[0]).replace("_", " ").capitalize()) if loc else None
    kind = first.get("type")
    if kind == "missing" or kind == "string_too_short":
        message = "fill this in"
    elif kind == "string_too_long":
        message = f"at most {(first.get('ctx') or {}).get('max_length')} characters"
    elif kind == "string_pattern_mismatch" and loc and loc[0] == "phone":
        message = "use only digits, spaces and + ( ) - . /"
    else:
        message = common.error_words(first)
    return common.sentence(f"{label}: {message}" if label else message)
