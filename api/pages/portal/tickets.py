"""Portal pages: tickets, the shop's support cases with the platform's support team
(docs/portal.md, docs/support.md).

- ``GET /portal/tickets``: the shop's cases, newest first, with their SLA state in words and
  when the next answer is due; what the plan includes; "+ New ticket".
- ``GET /portal/tickets/new`` and ``POST /portal/tickets``: a new case, offering only the
  channels the plan includes (a callback only where it has one). The form's nonce is the case's
  idempotency reference, so a double submit opens one ticket.
- ``GET /portal/tickets/{case_id}``: the thread and the facts; ``POST .../reply`` and
  ``POST .../close`` run the same workflow Updates as the API, the nonce being the Update's id.

Every change goes through ``api.services.cases``, as ``/v1/support/cases`` does; a refusal is
the page again with the API's status code and what happened in words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import FormData

from api.deps import CaseStarterDep, SessionDep, SettingsDep, SupportDep, TemporalDep
from api.errors import ApiError, NotFound
from api.pages.portal import common
from api.schemas import CaseMessagePublic, CasePublic, SupportPlan
from api.services import cases, orders, plans
from api.services.portal import Visitor
from db.models import SupportCase
from domain.business_time import WEEKDAYS
from domain.cases import (
    COMMERCIAL,
    MAX_BODY,
    CaseCreate,
    CaseStatus,
    CaseType,
    Category,
    Channel,
    MessageCreate,
    Priority,
    SlaState,
    channel_allowed,
    priority_for,
    target_key,
)
from domain.portal import Right
from domain.support import SupportConfig
from domain.support_ids import InvalidSupportId, normalize_support_id

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 20

# The case's response clock, as the merchant reads it (the console says the same to agents).
SLA_WORDS = {
    SlaState.ON_TRACK: "On track",
    SlaState.AT_RISK: "Answer due soon",
    SlaState.BREACHED: "Answer overdue",
    SlaState.MET: "Answered in time",
    SlaState.PAUSED: "Paused: waiting for you",
}
STATUS_WORDS = {
    CaseStatus.OPEN: "Open",
    CaseStatus.WAITING_ON_MERCHANT: "Waiting for your answer",
    CaseStatus.RESOLVED: "Resolved",
    CaseStatus.CLOSED: "Closed",
}
CATEGORY_WORDS = {
    Category.ORDERS: "Orders",
    Category.SHIPMENTS: "Shipments and deliveries",
    Category.INTEGRATION: "API and integration",
    Category.ACCOUNT: "Your account",
    Category.BILLING: "Billing and invoices",
}
CHANNEL_WORDS = {
    Channel.TICKET: "Ticket",
    Channel.CHAT: "Live chat",
    Channel.CALLBACK: "Phone callback",
}
CHANNEL_HINTS = {
    Channel.TICKET: "The support team answers in writing, here and by e-mail.",
    Channel.CHAT: "A quicker back-and-forth with the support team.",
    Channel.CALLBACK: "The support team calls you back at the number you give below.",
}
PRIORITY_WORDS = {Priority.NORMAL: "Normal priority", Priority.PRIORITY: "Priority handling"}
DONE = {
    "opened": "Your ticket is open: the support team has it.",
    "replied": "Your message was added to the ticket.",
    "closed": "The ticket is closed.",
}
# What a field of the new-ticket form is called when it is wrong.
FIELD_WORDS = {
    "category": "What it is about",
    "channel": "How to answer",
    "subject": "Subject",
    "description": "Your message",
    "body": "Your message",
    "phone": "Phone number",
    "order_id": "Order",
    "order": "Order",
}


# ---------------------------------------------------------------------------- the list


@router.get("/tickets", response_class=HTMLResponse)
async def tickets_page(request: Request, db: SessionDep, support: SupportDep) -> Response:
    visitor = await common.enter(request, db, Right.TICKETS)
    if isinstance(visitor, Response):
        return visitor
    cursor = request.query_params.get("cursor") or None
    try:
        found = await cases.list_merchant_cases(
            db, visitor.merchant, status=None, limit=PAGE_SIZE, cursor=cursor
        )
    except ApiError as err:  # a cursor the portal did not make
        return common.bad_cursor(
            request, visitor, err, ("/portal/tickets", "Back to the first page of tickets")
        )
    dues = await _due_times(db, visitor, [c.id for c in found.data])
    rows = [
        {
            "id": c.id,
            "number": c.number,
            "subject": c.subject,
            "status": STATUS_WORDS[c.status],
            "priority": PRIORITY_WORDS[c.priority],
            "sla": _sla(c.sla.state),
            "due": common.at(visitor, dues.get(c.id)),
            "opened": common.at(visitor, c.created_at),
        }
        for c in found.data
    ]
    plan = await plans.support_plan(db, visitor.merchant)
    context = {
        "rows": rows,
        "next_url": f"/portal/tickets?cursor={found.next_cursor}" if found.next_cursor else None,
        "paged": cursor is not None,
        "plan": _plan_box(plan, support),
        "notice": common.notice(request, DONE),
    }
    return common.page(request, visitor, "portal/tickets.html", context)


async def _due_times(db: AsyncSession, visitor: Visitor, ids: list[str]) -> dict[str, datetime]:
    """When the support team owes each case its next answer, while a clock runs (the read
    model's ``sla_due_at``, which the agents' queue sorts by)."""
    if not ids:
        return {}
    found = await db.exec(
        select(SupportCase.id, SupportCase.sla_due_at).where(
            col(SupportCase.id).in_(ids), SupportCase.merchant_id == visitor.merchant.id
        )
    )
    return {case_id: due for case_id, due in found.all() if due is not None}


def _plan_box(plan: SupportPlan, support: SupportConfig) -> dict[str, Any]:
    """What the plan includes, in words: targets, channels, priority, the manager, hours."""
    includes = plan.includes
    targets = support.targets[target_key(Channel.TICKET, priority_for(plan.plan))]
    callback = support.targets[target_key(Channel.CALLBACK, priority_for(plan.plan))]
    upgrade = f"not in the {plan.plan.value} plan"
    if plan.csm is not None:
        manager = (
            f"Included: {plan.csm.name} ({plan.csm.email}) answers your account and "
            "billing questions."
        )
    elif includes.csm:
        manager = "Included; none is assigned to your shop yet."
    else:
        manager = f"Not included ({upgrade}; premium has one)."
    return {
        "name": plan.plan.value.capitalize(),
        "targets": (
            f"A first answer within {_business(targets.first_response)}, each next answer "
            f"within {_business(targets.next_response)}."
        ),
        "rows": [
            ("Tickets", "Included" if includes.ticket else f"Not included ({upgrade})."),
            ("Live chat", "Included" if includes.chat else f"Not included ({upgrade})."),
            (
                "Priority handling",
                "Included: faster answers."
                if includes.priority
                else f"Not included ({upgrade}; growth and premium have it).",
            ),
            (
                "Phone callback",
                f"Included: a first call within {_business(callback.first_response)}."
                if includes.callback
                else f"Not included ({upgrade}; premium has it).",
            ),
            ("Dedicated customer success manager", manager),
        ],
        "hours": _hours(support),
    }


def _business(span: timedelta) -> str:
    """A target in business time: "8 working hours", "1 working hour 30 minutes"."""
    minutes = int(span.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    words = []
    if hours:
        words.append(f"{hours} working hour{'' if hours == 1 else 's'}")
    if rest or not hours:
        words.append(f"{rest} minute{'' if rest == 1 else 's'}")
    return " ".join(words)


def _hours(support: SupportConfig) -> str:
    """The support team's week, e.g. "Mon–Fri 09:00–18:00 (Europe/Amsterdam time)"."""
    calendar = support.calendar
    groups: list[tuple[list[str], str]] = []
    for day in WEEKDAYS:
        spans = calendar.hours.get(day) or []
        if not spans:
            continue
        text = ", ".join(s.replace("-", "–") for s in spans)
        if groups and groups[-1][1] == text and _follows(groups[-1][0][-1], day):
            groups[-1][0].append(day)
        else:
            groups.append(([day], text))
    days = "; ".join(
        f"{_day(g[0])}{'–' + _day(g[-1]) if len(g) > 1 else ''} {text}" for g, text in groups
    )
    holidays = (
        f", not on public holidays ({calendar.holidays_country})"
        if calendar.holidays_country
        else ""
    )
    return f"{days} ({calendar.timezone} time){holidays}."


def _follows(before: str, day: str) -> bool:
    return WEEKDAYS.index(day) == WEEKDAYS.index(before) + 1  # type: ignore[arg-type]


def _day(day: str) -> str:
    return day.capitalize()


# ---------------------------------------------------------------------------- a new ticket


@router.get("/tickets/new", response_class=HTMLResponse)
async def new_ticket_form(request: Request, db: SessionDep) -> Response:
    visitor = await common.enter(request, db, Right.TICKETS)
    if isinstance(visitor, Response):
        return visitor
    return await _new_ticket(request, db, visitor, _typed(None), 200)


# The new-ticket form's fields; what was typed is shown again after a refusal.
_FIELDS = ("category", "channel", "subject", "description", "phone", "order")


def _typed(form: FormData | None) -> dict[str, str]:
    """The form's values as typed; a new form: a ticket, nothing else chosen."""
    if form is None:
        return {name: "" for name in _FIELDS} | {"channel": Channel.TICKET.value}
    return {name: common.text(form, name) or "" for name in _FIELDS}


async def _new_ticket(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    values: dict[str, str],
    status_code: int,
    *,
    problem: str | None = None,
    field: str | None = None,
    nonce: str | None = None,
) -> Response:
    plan = await plans.support_plan(db, visitor.merchant)
    channels = [
        {"value": c.value, "label": CHANNEL_WORDS[c], "hint": CHANNEL_HINTS[c]}
        for c in Channel
        if channel_allowed(plan.plan, c)
    ]
    categories = [
        {
            "value": c.value,
            "label": CATEGORY_WORDS[c],
            "hint": (
                f"Goes to {plan.csm.name}, your customer success manager."
                if plan.csm is not None and c in COMMERCIAL
                else ""
            ),
        }
        for c in Category
    ]
    context = {
        "values": values,
        "channels": channels,
        "categories": categories,
        "callback": channel_allowed(plan.plan, Channel.CALLBACK),
        "plan_name": plan.plan.value,
        "max_body": MAX_BODY,
        "field": field,
        "problem": problem,
        "form_nonce": nonce or common.new_nonce(),
    }
    return common.page(request, visitor, "portal/ticket_new.html", context, status_code)


@router.post("/tickets", response_class=HTMLResponse)
async def open_ticket(
    request: Request,
    db: SessionDep,
    starter: CaseStarterDep,
    settings: SettingsDep,
    support: SupportDep,
) -> Response:
    entered = await common.enter_form(request, db, Right.TICKETS)
    if isinstance(entered, Response):
        return entered
    visitor, form = entered
    values = _typed(form)
    nonce = common.nonce_of(form)

    async def run() -> Response:
        body = await _case_create(db, visitor, values)
        try:
            case = await cases.create_case(
                db,
                starter,
                settings,
                support,
                visitor.merchant,
                body,
                common.creation_ref(visitor, nonce),
            )
        except ApiError as err:
            if err.code not in ("unknown_order", "order_not_shipped"):
                raise
            raise common.Invalid("order", common.refused(err), err.status_code) from None
        return common.done(f"/portal/tickets/{case.id}", "opened")

    failed = await common.attempt(
        db,
        visitor,
        f"new ticket for merchant {visitor.merchant.id}",
        run,
        unanswered=common.no_answer("The support desk", "check your tickets"),
    )
    if isinstance(failed, Response):
        return failed
    return await _new_ticket(
        request,
        db,
        visitor,
        values,
        failed.status,
        problem=failed.problem,
        field=failed.field,
        nonce=failed.nonce(nonce),
    )


async def _case_create(db: AsyncSession, visitor: Visitor, values: dict[str, str]) -> CaseCreate:
    """The API's body for the form, or ``common.Invalid`` saying the first thing wrong (in the
    form's order: the fields, then the order it names)."""
    channel = values["channel"] or Channel.TICKET.value
    phone = values["phone"].strip() if channel == Channel.CALLBACK.value else ""
    try:
        body = CaseCreate.model_validate(
            {
                "type": CaseType.SUPPORT_REQUEST.value,
                "category": values["category"],
                "channel": channel,
                "subject": values["subject"],
                "description": values["description"],
                "phone": phone or None,
            }
        )
    except ValidationError as err:
        raise common.Invalid(*_first_error(err)) from err
    order_id = await _linked_order(db, visitor, values["order"].strip())
    return body.model_copy(update={"order_id": order_id}) if order_id else body


async def _linked_order(db: AsyncSession, visitor: Visitor, text: str) -> str | None:
    """The id of the shop's order that ``text`` names: its Support ID (``PF-…``), its
    printflow id or the shop's own order reference. Nothing typed: no order."""
    if not text:
        return None
    if len(text) > 100:
        raise common.Invalid("order", "Order: type its reference, Support ID or order id.")
    if text.upper().startswith("PF-"):
        try:
            support_id = normalize_support_id(text)
        except InvalidSupportId as err:
            raise common.Invalid("order", f"Order: {err}") from None
        found, _ = await orders.list_orders(
            db,
            visitor.merchant,
            status=None,
            order_reference_id=None,
            support_id=support_id,
            limit=1,
            cursor=None,
        )
        if found:
            return found[0].id
    else:
        try:
            return (await orders.get_row(db, visitor.merchant, text)).id
        except NotFound:
            pass
        found, _ = await orders.list_orders(
            db, visitor.merchant, status=None, order_reference_id=text, limit=1, cursor=None
        )
        if found:
            return found[0].id
    raise common.Invalid(
        "order",
        f"Order: none of your shop's orders has the reference, Support ID or order id "
        f"{text!r}. Check it, or leave the field empty.",
    )


def _first_error(err: ValidationError) -> tuple[str | None, str]:
    """The first thing wrong with a form, in words, and the field it is about."""
    first = err.errors()[0]
    where = [str(p) for p in first.get("loc", ())]
    field = where[0] if where else None
    kind = str(first.get("type", ""))
    message = common.error_words(first)
    label = FIELD_WORDS.get(field or "", field or "")
    context = first.get("ctx") or {}
    if field is None:  # a rule across fields, e.g. a callback without a phone number
        return ("phone" if "phone" in message else None), common.sentence(message)
    if field == "category":
        return field, "Choose what the ticket is about."
    if field == "channel":
        return field, "Choose how the support team should answer."
    if kind in ("missing", "string_too_short"):
        return field, f"Fill in “{label}”."
    if kind == "string_too_long":
        return field, f"{label}: at most {context.get('max_length')} characters."
    if kind == "enum":
        return field, f"{label}: choose one of the options."
    if kind == "string_pattern_mismatch" and field == "phone":
        return field, "Phone number: use digits, spaces and + ( ) - . / only."
    return field, f"{label}: {message}."


# ---------------------------------------------------------------------------- one ticket


@router.get("/tickets/{case_id}", response_class=HTMLResponse)
async def ticket_page(request: Request, case_id: str, db: SessionDep) -> Response:
    entered = await common.enter_about(
        request, db, Right.TICKETS, "Ticket", lambda v: cases.case_row(db, case_id, v.merchant)
    )
    if isinstance(entered, Response):
        return entered
    visitor, row = entered
    return await _ticket(request, db, visitor, row, 200, notice=common.notice(request, DONE))


async def _ticket(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    row: SupportCase,
    status_code: int,
    *,
    notice: str | None = None,
    problem: str | None = None,
    body: str = "",
    nonce: str | None = None,
    field: str | None = None,
) -> Response:
    case = await cases.render(db, row)
    context = {
        "case": case,
        "status": STATUS_WORDS[case.status],
        "category": CATEGORY_WORDS[case.category],
        "channel": CHANNEL_WORDS[case.channel],
        "priority": PRIORITY_WORDS[case.priority],
        "sla": _sla(case.sla.state),
        "due": common.at(visitor, row.sla_due_at),
        "first_due": common.at(visitor, case.sla.first_response_due_at),
        "opened": common.at(visitor, case.created_at),
        "closed_at": common.at(visitor, case.closed_at),
        "order": await _order_facts(db, visitor, case),
        "messages": common.thread(visitor, case.messages, _agent),
        "closed": case.status is CaseStatus.CLOSED,
        "notice": notice,
        "problem": problem,
        "body": body,
        "field": field,
        "max_body": MAX_BODY,
        "form_nonce": nonce or common.new_nonce(),
    }
    return common.page(request, visitor, "portal/ticket.html", context, status_code)


def _agent(message: CaseMessagePublic) -> str:
    return f"{message.author_name or 'The support team'} (printflow support)"


async def _order_facts(
    db: AsyncSession, visitor: Visitor, case: CasePublic
) -> dict[str, str] | None:
    if case.order_id is None:
        return None
    try:
        order = await orders.get_row(db, visitor.merchant, case.order_id)
    except NotFound:
        return {"id": case.order_id, "reference": "", "support_id": ""}
    return {
        "id": order.id,
        "reference": order.order_reference_id,
        "support_id": order.support_id or "",
    }


@router.post("/tickets/{case_id}/reply", response_class=HTMLResponse)
async def reply(
    request: Request,
    case_id: str,
    db: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> Response:
    entered = await common.enter_form_about(
        request, db, Right.TICKETS, "Ticket", lambda v: cases.case_row(db, case_id, v.merchant)
    )
    if isinstance(entered, Response):
        return entered
    visitor, form, row = entered
    body = common.text(form, "body") or ""
    nonce = common.nonce_of(form)

    async def run() -> Response:
        try:
            message = MessageCreate(body=body)
        except ValidationError as err:
            raise common.Invalid("body", _first_error(err)[1]) from None
        await cases.merchant_message(
            db, temporal, settings, row, message.body, [], common.update_key(nonce)
        )
        return common.done(f"/portal/tickets/{case_id}", "replied")

    return await _change(request, db, visitor, row, "reply to", run, nonce, body)


@router.post("/tickets/{case_id}/close", response_class=HTMLResponse)
async def close(
    request: Request,
    case_id: str,
    db: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> Response:
    entered = await common.enter_form_about(
        request, db, Right.TICKETS, "Ticket", lambda v: cases.case_row(db, case_id, v.merchant)
    )
    if isinstance(entered, Response):
        return entered
    visitor, form, row = entered
    nonce = common.nonce_of(form)

    async def run() -> Response:
        if common.text(form, "confirm") != "yes":
            raise common.Invalid("confirm", "Tick “Yes, close this ticket for good” to close it.")
        await cases.close_case(db, temporal, settings, row, common.update_key(nonce))
        return common.done(f"/portal/tickets/{case_id}", "closed")

    return await _change(request, db, visitor, row, "close of", run, nonce)


async def _change(
    request: Request,
    db: AsyncSession,
    visitor: Visitor,
    row: SupportCase,
    what: str,
    run: Callable[[], Awaitable[Response]],
    nonce: str | None,
    body: str = "",
) -> Response:
    """Runs a change of the ticket (``common.attempt``); when it does not go through, the
    ticket again saying why, with the message as it was typed."""
    failed = await common.attempt(
        db,
        visitor,
        f"{what} case {row.id}",
        run,
        unanswered=common.no_answer("The ticket"),
        reload=(row,),
    )
    if isinstance(failed, Response):
        return failed
    return await _ticket(
        request,
        db,
        visitor,
        row,
        failed.status,
        problem=failed.problem,
        body=body,
        nonce=failed.nonce(nonce),
        field=failed.field,
    )


# ---------------------------------------------------------------------------- shared


def _sla(state: SlaState) -> dict[str, str]:
    return {"state": state.value, "word": SLA_WORDS[state]}
