"""Portal forms on an order's page for its problems (docs/portal.md): answering a hold,
reporting a problem with what was delivered, writing to the customer.

- ``POST /portal/orders/{id}/resolve-hold``: the API's ``POST /v1/orders/{id}/resolve-hold``:
  ``resolution=proceed`` goes on as it is; ``resolution=replace_files`` with a new URL in
  ``file-{item}-{file}`` for each file to replace (the item's other files stay) gives
  ``HoldResolution`` the new files of those items. The same workflow Update, the form's nonce its
  id, so the workflow alone decides and a double submit answers once. An address hold is answered
  with the address form of the order page (``#address``), and any hold by cancelling
  (``#cancel``).
- ``POST /portal/orders/{id}/reorder``: the API's ``POST /v1/orders/{id}/reorder``
  (``claims.reorder``): a reprint of the chosen items with a claim holding the reason, the
  description and the photo URLs (one a line), checked by ``ReorderRequest`` as the API checks
  them. The same report again is the same claim and reprint (the service matches it). Then the
  reprint's page.
- ``POST /portal/orders/{id}/contact``: the API's ``POST /v1/customer-contacts``
  (``contacts.create_contact``) for the order's Support ID, with the form's nonce as the
  contact's creation reference: a double submit is one contact and one e-mail. The form offers
  the reasons the contact policy lets this order be written about; its refusals (a reason that
  no longer fits, a customer's own cancel, a substitute offered) are said in words, with the
  API's status. Then the conversation's page (``/portal/messages/{id}``).

A refusal shows the order page again (``orders._order``) with the problem, the form as it was
sent and the field at fault; a 5xx keeps the form's nonce, so sending it again is the same
change. The order page includes this module's parts (``portal/_order_hold.html``,
``_order_reorder.html``, ``_order_contact.html``); they read what they show from the template
global ``order_problems()`` (``problems``), which reads that failed form from the request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from jinja2 import pass_context
from jinja2.runtime import Context
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import (
    ContactStarterDep,
    FacilitiesDep,
    SessionDep,
    SettingsDep,
    StarterDep,
    SupportDep,
    TemporalDep,
)
from api.errors import ApiError
from api.pages.portal import common, messages
from api.pages.portal import orders as order_pages
from api.schemas import PHOTOS_REQUIRED, ClaimReason, OrderPublic, ReorderRequest
from api.services import claims, contacts, orders
from api.services.portal import Visitor
from db.models import Order
from domain.contact_policy import ContactReason, OrderFacts, reasons_for
from domain.contacts import MAX_BODY, MAX_SUBJECT, ContactCreate
from domain.orders import (
    CancelReasonCode,
    HoldKind,
    HoldResolution,
    OrderState,
    RefusalCode,
    Status,
)
from domain.portal import Right, may
from workflows.orders import OrderWorkflow

log = logging.getLogger("printflow.portal")

router = APIRouter(prefix="/portal", include_in_schema=False)

# The forms, by the name a failed one is shown again with.
PROCEED, FILES, REORDER, CONTACT = "hold-proceed", "hold-files", "reorder", "contact"

# What the pages these forms lead to say after them (``common.done``): the order page and the
# conversation page; added to those pages' words below.
NOTICES: dict[str, str] = {
    "hold_answered": "The hold is answered: the order goes on as it is.",
    "files_replaced": "The files were replaced and the hold is answered: the order goes on "
    "with the new files.",
    "reordered": "Your problem report was filed as a claim, and this order is its reprint: it "
    "goes to production like any order. The claim links it to the original order.",
}
THREAD_NOTICES: dict[str, str] = {
    "sent": "Your message was e-mailed to the customer, who answers on their own page. Their "
    "answers appear here.",
}

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

# The claim reasons the API takes (``ClaimReason``), in words.
CLAIM_WORDS: dict[str, tuple[str, str]] = {
    "damaged": (
        "Damaged on the way",
        "It arrived broken, dented or torn. Photos of what arrived are needed.",
    ),
    "defective": (
        "Defective",
        "A fault of the product itself, such as a print that peels off. Photos are needed.",
    ),
    "misprint": (
        "Misprint",
        "Printed wrong: the colours, the position, or not the design that was ordered.",
    ),
    "lost": ("Lost", "The parcel never arrived."),
}
CLAIM_REASONS: tuple[str, ...] = get_args(ClaimReason)
DESCRIPTION_MAX = 2000  # ReorderRequest.description
PHOTOS_MAX = 20  # ReorderRequest.photo_urls

# The reasons a customer may be written to (the contact policy), in words, with when they fit.
CONTACT_WORDS: dict[ContactReason, tuple[str, str]] = {
    ContactReason.INVALID_ADDRESS: (
        "Address problem",
        "an order not shipped yet, or on hold because of its address",
    ),
    ContactReason.DELIVERY_DELAY: ("Delivery delay", "a shipped order that has not arrived yet"),
    ContactReason.RETURNED_TO_SENDER: (
        "Returned to sender",
        "an order whose parcel came back",
    ),
    ContactReason.INVENTORY_CANCELLATION: (
        "Canceled: out of stock",
        "an order canceled because it was out of stock",
    ),
}

NOT_DONE = (
    "The change did not go through just now, so it may not have been made: check the order, "
    "then send the form again."
)


# ---------------------------------------------------------------------------- a failed form


@dataclass(frozen=True)
class Failed:
    """A form of this module that did not go through, as the order page shows it again: the
    values sent, the field at fault (if one is) and, after a 5xx, the nonce to send again."""

    form: str
    values: dict[str, Any] = field(default_factory=dict)
    invalid: str | None = None
    nonce: str | None = None


_STATE = "portal_order_problem"


async def _again(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    row: Order,
    status_code: int,
    problem: str,
    failed: Failed,
) -> Response:
    """The order page again, saying ``problem``, with the form as it was sent."""
    kept = failed.nonce if status_code >= 500 else None
    setattr(request.state, _STATE, Failed(failed.form, failed.values, failed.invalid, kept))
    return await order_pages._order(
        request,
        db,
        visitor,
        row,
        status_code,
        problem=problem,
        failed_form=failed.form,
        nonce=kept,
        invalid=failed.invalid,
    )


Words = Callable[[ApiError], tuple[str | None, str]]


async def _attempt(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    row: Order,
    failed: Failed,
    run: Callable[[], Awaitable[Response]],
    words: Words,
) -> Response:
    """Runs the change (``run``: the API's own service call, then the redirect); on a refusal
    the order page again, saying why in ``words`` (the field at fault, the sentence)."""
    try:
        return await run()
    except ApiError as err:
        status = err.status_code
        where, problem = (None, NOT_DONE) if status >= 500 else words(err)
    except RequestValidationError as err:  # the service's own check of the body (a 422)
        status, problem = 422, _sentence("; ".join(str(e.get("msg", "")) for e in err.errors()))
        named = [str(part) for e in err.errors() for part in e.get("loc", ())]
        where = "items" if "item_reference_ids" in named else None
    except Exception:
        log.exception("the portal's %s form for order %s failed", failed.form, row.id)
        status, where, problem = 503, None, NOT_DONE
    await order_pages._recover(db, visitor)
    await db.refresh(row)
    return await _again(
        request,
        db,
        visitor,
        row,
        status,
        problem,
        Failed(failed.form, failed.values, where or failed.invalid, failed.nonce),
    )


async def _entered(
    request: Request, db: AsyncSession, order_id: str, right: Right
) -> tuple[Visitor, Any, Order] | Response:
    """The visitor with ``right``, their form and their shop's order; else the answer to send
    (the sign-in page, the 403 page, the 404 page of another shop's order)."""
    entered = await common.enter_form(request, db, right)
    if isinstance(entered, Response):
        return entered
    visitor, form = entered
    try:
        row = await orders.get_row(db, visitor.merchant, order_id)
    except ApiError:
        return common.not_found(request, visitor, "Order")
    return visitor, form, row


# ---------------------------------------------------------------------------- the hold


@router.post("/orders/{order_id}/resolve-hold", response_class=HTMLResponse)
async def resolve_hold(
    request: Request, order_id: str, db: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> Response:
    entered = await _entered(request, db, order_id, Right.ORDERS_ACT)
    if isinstance(entered, Response):
        return entered
    visitor, form, row = entered
    nonce = common.nonce_of(form)
    resolution = common.text(form, "resolution")
    if resolution == "proceed":
        failed, done = Failed(PROCEED, nonce=nonce), "hold_answered"
        body = HoldResolution(action="proceed")
    elif resolution == "replace_files":
        state = OrderState.model_validate(row.state)
        values = {
            name: (common.text(form, name) or "").strip()[:2100]
            for name, _, _ in _file_fields(state)
        }
        failed, done = Failed(FILES, values, nonce=nonce), "files_replaced"
        try:
            body = _replacement(state, values)
        except _Invalid as err:
            where = Failed(FILES, values, err.field, nonce)
            return await _again(request, db, visitor, row, 422, err.message, where)
    else:
        return await _again(
            request,
            db,
            visitor,
            row,
            422,
            "Choose how to answer the hold: as it is, or with new files.",
            Failed(PROCEED, nonce=nonce),
        )

    async def run() -> Response:
        await orders.update_order(
            db,
            temporal,
            settings,
            row,
            None,
            OrderWorkflow.resolve_hold,
            body,
            idempotency_key=common.update_key(nonce),
        )
        return common.done(f"/portal/orders/{order_id}", done)

    return await _attempt(request, db, visitor, row, failed, run, _hold_words)


class _Invalid(Exception):
    """A field of a form that cannot be sent: its name and what is wrong, in words."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _file_fields(state: OrderState) -> list[tuple[str, int, int]]:
    """The replace form's fields: ``file-{item}-{file}`` (their positions in the order)."""
    return [
        (f"file-{i}-{j}", i, j)
        for i, item in enumerate(state.items)
        for j, _ in enumerate(item.files)
    ]


def _replacement(state: OrderState, values: dict[str, str]) -> HoldResolution:
    """``replace_files`` for the items with a new URL: each with all its files, the new URLs
    in place of the old ones; or ``_Invalid`` naming the first field at fault."""
    fields = _file_fields(state)
    files: dict[str, list[dict[str, str]]] = {}
    for i, item in enumerate(state.items):
        news = [values.get(f"file-{i}-{k}", "") for k in range(len(item.files))]
        if any(news):
            files[item.item_reference_id] = [
                {"type": f.type, "url": new or str(f.url)}
                for f, new in zip(item.files, news, strict=True)
            ]
    if not files:
        raise _Invalid(
            fields[0][0] if fields else None, "Give the new address (URL) of at least one file."
        )
    try:
        return HoldResolution.model_validate({"action": "replace_files", "files": files})
    except ValidationError as err:
        problem = err.errors()[0]
        loc = problem.get("loc") or ()
        if len(loc) >= 3 and loc[0] == "files" and isinstance(loc[2], int):
            reference, j = str(loc[1]), loc[2]
            i = next(i for i, item in enumerate(state.items) if item.item_reference_id == reference)
            url = files[reference][j]["url"]
            raise _Invalid(
                f"file-{i}-{j}",
                f"Item {reference}, file {j + 1}: “{url[:200]}” is not a web address a facility "
                "can fetch; give the whole address, starting with https://.",
            ) from None
        raise _Invalid(None, _sentence(_message(problem))) from None


def _hold_words(err: ApiError) -> tuple[str | None, str]:
    if err.code == RefusalCode.ORDER_NOT_ON_HOLD:
        return None, (
            "This order is not on hold any more: the hold was answered, or the order was canceled."
        )
    return None, order_pages._refused(err)


# ---------------------------------------------------------------------------- reporting a problem


@router.post("/orders/{order_id}/reorder", response_class=HTMLResponse)
async def reorder(
    request: Request,
    order_id: str,
    db: SessionDep,
    starter: StarterDep,
    settings: SettingsDep,
    facilities: FacilitiesDep,
) -> Response:
    entered = await _entered(request, db, order_id, Right.ORDERS_ACT)
    if isinstance(entered, Response):
        return entered
    visitor, form, row = entered
    nonce = common.nonce_of(form)
    values: dict[str, Any] = {
        "items": [v[:100] for v in form.getlist("items") if isinstance(v, str)][:100],
        "reason": (common.text(form, "reason") or "")[:40],
        "description": (common.text(form, "description") or "")[: DESCRIPTION_MAX * 2],
        "photo_urls": (common.text(form, "photo_urls") or "")[:50_000],
    }
    failed = Failed(REORDER, values, nonce=nonce)
    try:
        body = _report(values)
    except _Invalid as err:
        where = Failed(REORDER, values, err.field, nonce)
        return await _again(request, db, visitor, row, 422, err.message, where)

    async def run() -> Response:
        made, _ = await claims.reorder(
            db, starter, settings, facilities, visitor.merchant, order_id, body
        )
        return common.done(f"/portal/orders/{made.order.id}", "reordered")

    return await _attempt(request, db, visitor, row, failed, run, _reorder_words)


def _photo_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _report(values: dict[str, Any]) -> ReorderRequest:
    """The API's body for the form, or ``_Invalid`` saying the first thing wrong."""
    if not values["items"]:
        raise _Invalid("items", "Choose at least one item to reprint.")
    if values["reason"] not in CLAIM_REASONS:
        raise _Invalid("reason", "Choose what went wrong.")
    # The API takes the description as one line: a line break typed in the box is a space.
    description = " ".join(values["description"].split())
    photos = _photo_lines(values["photo_urls"])
    if values["reason"] in PHOTOS_REQUIRED and not photos:
        label = CLAIM_WORDS.get(values["reason"], (values["reason"], ""))[0]
        raise _Invalid(
            "photo_urls",
            f"Photo URLs: a report of “{label}” needs at least one photo of what arrived, one "
            "web address a line.",
        )
    try:
        return ReorderRequest.model_validate(
            {
                "reason": values["reason"],
                "description": description,
                "photo_urls": photos,
                "item_reference_ids": values["items"],
            }
        )
    except ValidationError as err:
        raise _Invalid(*_report_problem(err, photos)) from None


def _report_problem(err: ValidationError, photos: list[str]) -> tuple[str | None, str]:
    first = err.errors()[0]
    loc = first.get("loc") or ()
    kind = str(first.get("type", ""))
    name = str(loc[0]) if loc else None
    if name == "description":
        if kind in ("missing", "string_too_short"):
            return name, "Describe the problem: what arrived, and what is wrong with it."
        if kind == "string_too_long":
            return name, f"Description: at most {DESCRIPTION_MAX} characters."
        return name, _sentence(f"Description: {_message(first)}")
    if name == "photo_urls":
        if len(loc) > 1 and isinstance(loc[1], int):
            url = photos[loc[1]][:200]
            return name, (
                f"Photo URLs, line {loc[1] + 1}: “{url}” is not a web address; give the "
                "whole address of the photo, starting with https://."
            )
        if kind == "too_long":
            return name, f"Photo URLs: at most {PHOTOS_MAX}, one a line."
        return name, _sentence(f"Photo URLs: {_message(first)}")
    if name == "item_reference_ids":
        return "items", _sentence(f"Items: {_message(first)}")
    return None, _sentence(_message(first))


def _reorder_words(err: ApiError) -> tuple[str | None, str]:
    if err.code == RefusalCode.ORDER_NOT_PRODUCED:
        return None, (
            "Only an order that was printed, shipped, delivered or returned can be reprinted."
        )
    return None, order_pages._refused(err)


# ---------------------------------------------------------------------------- the customer


@router.post("/orders/{order_id}/contact", response_class=HTMLResponse)
async def contact(
    request: Request,
    order_id: str,
    db: SessionDep,
    starter: ContactStarterDep,
    settings: SettingsDep,
    support: SupportDep,
) -> Response:
    entered = await _entered(request, db, order_id, Right.MESSAGES)
    if isinstance(entered, Response):
        return entered
    visitor, form, row = entered
    nonce = common.nonce_of(form)
    values = {
        "reason": (common.text(form, "reason") or "")[:64],
        "subject": (common.text(form, "subject") or "")[: MAX_SUBJECT * 2],
        "body": (common.text(form, "body") or "")[: MAX_BODY * 2],
    }
    failed = Failed(CONTACT, values, nonce=nonce)
    if not values["reason"]:
        where = Failed(CONTACT, values, "reason", nonce)
        return await _again(
            request, db, visitor, row, 422, "Choose what you are writing about.", where
        )
    try:
        body = ContactCreate.model_validate(
            {
                "support_id": row.support_id,
                "reason": values["reason"],
                "subject": values["subject"],
                "body": values["body"],
            }
        )
    except ValidationError as err:
        at, problem = _contact_problem(err)
        where = Failed(CONTACT, values, at, nonce)
        return await _again(request, db, visitor, row, 422, problem, where)
    status = OrderState.model_validate(row.state).status

    async def run() -> Response:
        made = await contacts.create_contact(
            db,
            starter,
            settings,
            support,
            visitor.merchant,
            body,
            common.creation_ref(visitor, nonce),
        )
        return common.done(f"/portal/messages/{made.id}", "sent")

    return await _attempt(
        request, db, visitor, row, failed, run, lambda err: _contact_words(err, status)
    )


def _contact_problem(err: ValidationError) -> tuple[str | None, str]:
    first = err.errors()[0]
    loc = first.get("loc") or ()
    name = str(loc[0]) if loc else None
    kind = str(first.get("type", ""))
    label = {"subject": "Subject", "body": "Your message"}.get(name or "", "")
    if name in ("subject", "body"):
        if kind in ("missing", "string_too_short"):
            return name, f"Fill in “{label}”."
        if kind == "string_too_long":
            limit = MAX_SUBJECT if name == "subject" else MAX_BODY
            return name, f"{label}: at most {limit:,} characters.".replace(",", " ")
        return name, _sentence(f"{label}: {_message(first)}")
    return None, _sentence(_message(first))


def _contact_words(err: ApiError, status: Status) -> tuple[str | None, str]:
    """The contact policy's refusals (``domain.contact_policy.check_contact``), in words."""
    details = err.details if isinstance(err.details, dict) else {}
    phrase = str(details.get("phrase") or "")[:200]
    if err.code == "reason_not_allowed":
        return "reason", (
            "A customer may be written to only about an address problem, a delivery delay, a "
            "returned parcel or an order canceled because it was out of stock: choose one of "
            "the reasons listed. Nothing was sent."
        )
    if err.code == "customer_cancellation" and phrase:
        return "body", (
            f"Your message asks why the customer canceled, or tries to win them back "
            f"(“{phrase}”): customers are not written to about their own cancels. Nothing was "
            "sent."
        )
    if err.code == "customer_cancellation":
        return None, (
            "The customer canceled this order themselves, so they are not written to about it. "
            "Nothing was sent."
        )
    if err.code == "reason_does_not_fit":
        reason, fits = _reason_words(str(details.get("reason", "")))
        now = order_pages.STATUS_WORDS.get(status, status.value).lower()
        fitting = [_reason_words(str(r))[0] for r in details.get("reasons_that_fit") or []]
        rest = (
            f"What fits it now: {', '.join(fitting)}."
            if fitting
            else "No reason fits it now, so the customer cannot be written to about it."
        )
        return "reason", (
            f"“{reason}” is for {fits}, and this order is {now}. {rest} Nothing was sent."
        )
    if err.code == "substitute_not_allowed":
        return "body", (
            f"Your message offers the customer another product in place of the one ordered "
            f"(“{phrase}”). printflow does not allow that: cancel the order instead (why: out "
            "of stock) and, if you like, invite the customer to place a new order. Nothing was "
            "sent."
        )
    return None, _sentence(err.message)


def _reason_words(value: str) -> tuple[str, str]:
    try:
        return CONTACT_WORDS[ContactReason(value)]
    except ValueError:
        return value.replace("_", " ").capitalize(), "another kind of order"


# ---------------------------------------------------------------------------- the page's parts


@pass_context
def problems(context: Context) -> dict[str, Any]:
    """What the order page's parts of this module show (``order_problems()`` in a template):
    the hold's answers, the problem report and the customer message, each with its nonce and,
    when it is the form that failed, the values sent and the field at fault."""
    order = OrderPublic.model_validate(context["order"])
    visitor: Visitor = context["visitor"]
    request: Request = context["request"]
    failed: Failed | None = getattr(request.state, _STATE, None)

    def form(name: str) -> dict[str, Any]:
        mine = failed is not None and failed.form == name
        return {
            "nonce": (failed.nonce if mine and failed else None) or common.new_nonce(),
            "failed": mine,
            "sent": failed.values if mine and failed else {},
            "invalid": failed.invalid if mine and failed else None,
        }

    can_act = may(visitor.user.role, Right.ORDERS_ACT)
    return {
        "hold": _hold(order, form(PROCEED), form(FILES)) if can_act else None,
        "reorder": _reorder(order, form(REORDER)) if can_act else None,
        "contact": (
            _contact(order, form(CONTACT)) if may(visitor.user.role, Right.MESSAGES) else None
        ),
    }


def _hold(
    order: OrderPublic, proceed: dict[str, Any], files: dict[str, Any]
) -> dict[str, Any] | None:
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
    if not order.allowed_actions.reorder:
        return None
    values = form["sent"]
    chosen = values.get("items") if form["failed"] else None
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
        "reason": values.get("reason", ""),
        "description": values.get("description", ""),
        "photo_urls": values.get("photo_urls", ""),
        "description_max": DESCRIPTION_MAX,
        "photos_max": PHOTOS_MAX,
    }


def _contact(order: OrderPublic, form: dict[str, Any]) -> dict[str, Any]:
    facts = OrderFacts(
        status=order.status,
        hold_kind=order.hold.kind if order.hold is not None else None,
        cancel_reason_code=order.cancel_reason_code,
    )
    values = form["sent"]
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
                "checked": values.get("reason") == r or (len(fitting) == 1 and not values),
            }
            for r in fitting
        ],
        "all_reasons": [{"label": label, "fits": fits} for label, fits in CONTACT_WORDS.values()],
        "email": order.shipping_address.email,
        "subject": values.get("subject", f"Your order {order.order_reference_id}"),
        "body": values.get("body", ""),
        "max_subject": MAX_SUBJECT,
        "max_body": MAX_BODY,
    }


# ---------------------------------------------------------------------------- words


def _message(error: Any) -> str:
    return str(error.get("msg", "is not valid")).removeprefix("Value error, ")


_sentence = order_pages._sentence


common.templates.env.globals["order_problems"] = problems
order_pages.DONE.update(NOTICES)
messages.DONE.update(THREAD_NOTICES)
