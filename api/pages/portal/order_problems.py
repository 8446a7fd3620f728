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

A refusal shows the order page again (``orders.order_view``, which also shows these forms) with
the problem, the form as it was sent and the field at fault; a 5xx keeps the form's nonce, so
sending it again is the same change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

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
from api.pages.portal import common
from api.pages.portal.order_words import (
    CLAIM_REASONS,
    CLAIM_WORDS,
    CONTACT,
    CONTACT_WORDS,
    DESCRIPTION_MAX,
    FILES,
    PHOTOS_MAX,
    PROCEED,
    REORDER,
    STATUS_WORDS,
)
from api.pages.portal.orders import change_order, order_form
from api.schemas import PHOTOS_REQUIRED, ReorderRequest
from api.services import claims, contacts, orders
from domain.contact_policy import ContactReason
from domain.contacts import MAX_BODY, MAX_SUBJECT, ContactCreate
from domain.orders import HoldResolution, OrderState, Status
from domain.portal import Right
from workflows.orders import OrderWorkflow

router = APIRouter(prefix="/portal", include_in_schema=False)


# ---------------------------------------------------------------------------- the hold


@router.post("/orders/{order_id}/resolve-hold", response_class=HTMLResponse)
async def resolve_hold(
    request: Request, order_id: str, db: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> Response:
    entered = await order_form(request, db, order_id, Right.ORDERS_ACT)
    if isinstance(entered, Response):
        return entered
    visitor, form, row, nonce = entered
    resolution = common.text(form, "resolution")
    state = OrderState.model_validate(row.state)
    values: dict[str, Any] = {}
    if resolution == "replace_files":
        values = {
            name: (common.text(form, name) or "").strip()[:2100]
            for name, _, _ in _file_fields(state)
        }

    async def run() -> Response:
        if resolution == "proceed":
            body, done = HoldResolution(action="proceed"), "hold_answered"
        elif resolution == "replace_files":
            body, done = _replacement(state, values), "files_replaced"
        else:
            raise common.Invalid(
                None, "Choose how to answer the hold: as it is, or with new files."
            )
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

    form_name = FILES if resolution == "replace_files" else PROCEED
    return await change_order(request, db, visitor, row, form_name, run, values, nonce)


def _file_fields(state: OrderState) -> list[tuple[str, int, int]]:
    """The replace form's fields: ``file-{item}-{file}`` (their positions in the order)."""
    return [
        (f"file-{i}-{j}", i, j)
        for i, item in enumerate(state.items)
        for j, _ in enumerate(item.files)
    ]


def _replacement(state: OrderState, values: dict[str, str]) -> HoldResolution:
    """``replace_files`` for the items with a new URL: each with all its files, the new URLs
    in place of the old ones; or ``common.Invalid`` naming the first field at fault."""
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
        raise common.Invalid(
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
            raise common.Invalid(
                f"file-{i}-{j}",
                f"Item {reference}, file {j + 1}: “{url[:200]}” is not a web address a facility "
                "can fetch; give the whole address, starting with https://.",
            ) from None
        raise common.Invalid(None, common.sentence(common.error_words(problem))) from None


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
    entered = await order_form(request, db, order_id, Right.ORDERS_ACT)
    if isinstance(entered, Response):
        return entered
    visitor, form, row, nonce = entered
    values: dict[str, Any] = {
        "items": [v[:100] for v in form.getlist("items") if isinstance(v, str)][:100],
        "reason": (common.text(form, "reason") or "")[:40],
        "description": (common.text(form, "description") or "")[: DESCRIPTION_MAX * 2],
        "photo_urls": (common.text(form, "photo_urls") or "")[:50_000],
    }

    async def run() -> Response:
        body = _report(values)
        try:
            made, _ = await claims.reorder(
                db, starter, settings, facilities, visitor.merchant, order_id, body
            )
        except RequestValidationError as err:  # the service's own check of the body
            named = [str(part) for e in err.errors() for part in e.get("loc", ())]
            raise common.Invalid(
                "items" if "item_reference_ids" in named else None,
                common.sentence("; ".join(str(e.get("msg", "")) for e in err.errors())),
            ) from None
        return common.done(f"/portal/orders/{made.order.id}", "reordered")

    return await change_order(request, db, visitor, row, REORDER, run, values, nonce)


def _report(values: dict[str, Any]) -> ReorderRequest:
    """The API's body for the form, or ``common.Invalid`` saying the first thing wrong."""
    if not values["items"]:
        raise common.Invalid("items", "Choose at least one item to reprint.")
    if values["reason"] not in CLAIM_REASONS:
        raise common.Invalid("reason", "Choose what went wrong.")
    # The API takes the description as one line: a line break typed in the box is a space.
    description = " ".join(values["description"].split())
    photos = [line.strip() for line in values["photo_urls"].splitlines() if line.strip()]
    if values["reason"] in PHOTOS_REQUIRED and not photos:
        label = CLAIM_WORDS.get(values["reason"], (values["reason"], ""))[0]
        raise common.Invalid(
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
        raise common.Invalid(*_report_problem(err, photos)) from None


def _report_problem(err: ValidationError, photos: list[str]) -> tuple[str | None, str]:
    first = err.errors()[0]
    loc = first.get("loc") or ()
    kind = str(first.get("type", ""))
    name = str(loc[0]) if loc else None
    said = common.error_words(first)
    if name == "description":
        if kind in ("missing", "string_too_short"):
            return name, "Describe the problem: what arrived, and what is wrong with it."
        if kind == "string_too_long":
            return name, f"Description: at most {DESCRIPTION_MAX} characters."
        return name, common.sentence(f"Description: {said}")
    if name == "photo_urls":
        if len(loc) > 1 and isinstance(loc[1], int):
            url = photos[loc[1]][:200]
            return name, (
                f"Photo URLs, line {loc[1] + 1}: “{url}” is not a web address; give the "
                "whole address of the photo, starting with https://."
            )
        if kind == "too_long":
            return name, f"Photo URLs: at most {PHOTOS_MAX}, one a line."
        return name, common.sentence(f"Photo URLs: {said}")
    if name == "item_reference_ids":
        return "items", common.sentence(f"Items: {said}")
    return None, common.sentence(said)


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
    entered = await order_form(request, db, order_id, Right.MESSAGES)
    if isinstance(entered, Response):
        return entered
    visitor, form, row, nonce = entered
    values = {
        "reason": (common.text(form, "reason") or "")[:64],
        "subject": (common.text(form, "subject") or "")[: MAX_SUBJECT * 2],
        "body": (common.text(form, "body") or "")[: MAX_BODY * 2],
    }
    status = OrderState.model_validate(row.state).status

    async def run() -> Response:
        if not values["reason"]:
            raise common.Invalid("reason", "Choose what you are writing about.")
        try:
            body = ContactCreate.model_validate({"support_id": row.support_id, **values})
        except ValidationError as err:
            raise common.Invalid(*_contact_problem(err)) from None
        try:
            made = await contacts.create_contact(
                db,
                starter,
                settings,
                support,
                visitor.merchant,
                body,
                common.creation_ref(visitor, nonce),
            )
        except contacts.Refused as err:  # the contact policy, in words
            raise common.Invalid(*_contact_words(err, status), err.status_code) from None
        return common.done(f"/portal/messages/{made.id}", "sent")

    return await change_order(request, db, visitor, row, CONTACT, run, values, nonce)


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
        return name, common.sentence(f"{label}: {common.error_words(first)}")
    return None, common.sentence(common.error_words(first))


def _contact_words(err: ApiError, status: Status) -> tuple[str | None, str]:
    """The contact policy's refusals (``domain.contact_policy.check_contact``), in words, and
    the field they are about."""
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
        now = STATUS_WORDS.get(status, status.value).lower()
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
    return None, common.sentence(err.message)


def _reason_words(value: str) -> tuple[str, str]:
    try:
        return CONTACT_WORDS[ContactReason(value)]
    except ValueError:
        return value.replace("_", " ").capitalize(), "another kind of order"
