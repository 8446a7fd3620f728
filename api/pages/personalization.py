"""``/p/{token}``: the form an end customer opens from the link their shop forwarded.

Plain HTML forms, no JavaScript: it works in any browser and with any assistive technology, and
the page loads nothing from anywhere else. Every refusal is a page that says what happened and
what to do, with the status code the JSON endpoint would answer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.pages.html import render
from api.services import personalization
from domain.orders import ItemState, OrderState, Status, StoredPersonalizationField
from domain.personalization import error_key, max_length

log = logging.getLogger("printflow.pages")

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

# Text fields allowing more than this get a multi-line box.
_MULTILINE_ABOVE = 150


@router.get("/p/{token}", response_class=HTMLResponse)
async def personalization_form(request: Request, token: str, session: SessionDep) -> HTMLResponse:
    try:
        ctx = await personalization.open_link(session, token)
    except ApiError as err:
        return _refusal(request, err)
    return _form(request, ctx, values={}, errors={}, status_code=200)


@router.post("/p/{token}", response_class=HTMLResponse)
async def submit_personalization(
    request: Request,
    token: str,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> HTMLResponse:
    try:
        ctx = await personalization.open_link(session, token)
    except ApiError as err:
        return _refusal(request, err)
    values = _values(await request.form())
    try:
        state = await personalization.submit(
            session, temporal, settings.update_timeout, ctx, values
        )
    except personalization.InvalidPersonalization as err:
        return _form(request, ctx, values, err.errors, status_code=422)
    except ApiError as err:
        return _refusal(request, err, ctx)
    except Exception:
        # Temporal unreachable or the like: keep what the customer typed so a retry is one click.
        log.exception("personalization of order %s failed", ctx.order.id)
        problem = "We could not save your personalization just now. Please send it again."
        return _form(request, ctx, values, {}, status_code=503, problem=problem)
    return _thanks(request, ctx, state)


# ---------------------------------------------------------------------------- form


def _values(form: FormData) -> dict[str, dict[str, str]]:
    """Inputs are named "item_reference_id.field"; field names have no dots, item refs may."""
    values: dict[str, dict[str, str]] = {}
    for name, value in form.multi_items():
        ref, dot, field = name.rpartition(".")
        if dot and ref and field and isinstance(value, str):
            values.setdefault(ref, {})[field] = value
    return values


def _hint(field: StoredPersonalizationField) -> str:
    if field.type == "image_url":
        return "The web address of your image, starting with https:// or http://"
    return f"Up to {max_length(field)} characters."


def _sections(
    items: list[ItemState], values: dict[str, dict[str, str]], errors: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, str | None]]]:
    sections: list[dict[str, Any]] = []
    problems: list[dict[str, str | None]] = []
    known: set[str] = set()
    for i, item in enumerate(items):
        spec = item.personalization
        assert spec is not None  # LinkContext.items are the items that take personalization
        fields = []
        for j, field in enumerate(spec.fields):
            key = error_key(item.item_reference_id, field.name)
            known.add(key)
            dom_id = f"item{i}-field{j}"
            error = errors.get(key)
            if error:
                problems.append({"anchor": dom_id, "text": f"{field.label}: {error}"})
            fields.append(
                {
                    "id": dom_id,
                    "name": key,
                    "label": field.label,
                    "type": field.type,
                    "required": field.required,
                    "max_length": max_length(field),
                    "multiline": field.type == "text" and max_length(field) > _MULTILINE_ABOVE,
                    "hint": _hint(field),
                    "value": values.get(item.item_reference_id, {}).get(field.name, ""),
                    "error": error,
                }
            )
        sections.append(
            {
                "id": f"item{i}",
                "reference": item.item_reference_id,
                "product": item.product_uid,
                "quantity": item.quantity,
                "fields": fields,
            }
        )
    # Errors about nothing on the form (a tampered request) still get said, just not linked.
    problems += [{"anchor": None, "text": e} for k, e in errors.items() if k not in known]
    return sections, problems


def _form(
    request: Request,
    ctx: personalization.LinkContext,
    values: dict[str, dict[str, str]],
    errors: dict[str, str],
    *,
    status_code: int,
    problem: str | None = None,
) -> HTMLResponse:
    sections, problems = _sections(ctx.items, values, errors)
    if problem:
        problems.insert(0, {"anchor": None, "text": problem})
    return _page(
        request,
        "form.html",
        {
            "shop": ctx.shop_name,
            "reference": ctx.state.order_reference_id,
            "sections": sections,
            "problems": problems,
            "errors": bool(problems),
        },
        status_code,
    )


# ---------------------------------------------------------------------------- outcomes


def _thanks(request: Request, ctx: personalization.LinkContext, state: OrderState) -> HTMLResponse:
    asked = {i.item_reference_id for i in ctx.items}
    summary = []
    for item in state.items:
        if item.item_reference_id not in asked or item.personalization is None:
            continue
        given = item.personalization_values or {}
        pairs = [(f.label, given[f.name]) for f in item.personalization.fields if f.name in given]
        if pairs:
            summary.append({"product": item.product_uid, "quantity": item.quantity, "pairs": pairs})
    shop, reference = ctx.shop_name, state.order_reference_id
    if state.status is Status.PENDING_APPROVAL:
        next_step = f"{shop} checks the order before it goes to print."
    else:
        next_step = "The order is on its way to production."
    return _message(
        request,
        200,
        "good",
        "Thank you!",
        [
            f"Your personalization of order {reference} is with {shop}. {next_step}",
            f"It cannot be changed through this link any more. If something is wrong, please "
            f"contact {shop}.",
        ],
        summary,
    )


def _refusal(
    request: Request, err: ApiError, ctx: personalization.LinkContext | None = None
) -> HTMLResponse:
    about: dict[str, Any] = err.details if isinstance(err.details, dict) else {}
    shop = about.get("shop") or (ctx.shop_name if ctx else "the shop")
    order = about.get("order_reference_id") or (ctx.state.order_reference_id if ctx else None)
    this_order = f"Order {order}" if order else "This order"
    match err.code:
        case personalization.LINK_NOT_FOUND:
            return _message(
                request,
                404,
                "bad",
                "Link not found",
                [
                    "There is no personalization link like this one. Please check that you "
                    "opened or copied the whole link from the message you received."
                ],
            )
        case personalization.LINK_EXPIRED:
            return _message(
                request,
                410,
                "bad",
                "This link has expired",
                [
                    "Personalization links work for a limited time.",
                    f"{shop} has been sent a new link for {this_order.lower()}; please ask "
                    "them for it.",
                ],
            )
        case personalization.ORDER_CANCELED:
            return _message(
                request,
                409,
                "bad",
                "This order was canceled",
                [
                    f"{this_order} was canceled, so there is nothing to personalize. If you "
                    f"think this is a mistake, please contact {shop}."
                ],
            )
        case personalization.ALREADY_PERSONALIZED:
            return _message(
                request,
                409,
                "good",
                "Already personalized",
                [
                    f"{this_order} has already been personalized; the link works only once. "
                    f"If something needs changing, please contact {shop}."
                ],
            )
    # personalization_closed, or a refusal the workflow added later: the order has moved on.
    return _message(
        request,
        err.status_code,
        "",
        "Nothing to personalize any more",
        [
            f"{this_order} no longer waits for personalization. If you have questions about "
            f"it, please contact {shop}."
        ],
    )


def _message(
    request: Request,
    status_code: int,
    tone: str,
    heading: str,
    paragraphs: list[str],
    summary: list[dict[str, Any]] | None = None,
) -> HTMLResponse:
    context = {"heading": heading, "paragraphs": paragraphs, "tone": tone, "summary": summary}
    return _page(request, "message.html", context, status_code)


def _page(
    request: Request, template: str, context: dict[str, Any], status_code: int
) -> HTMLResponse:
    return render(templates, request, template, context, status_code)
