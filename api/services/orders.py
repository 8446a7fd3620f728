"""What the order routes do: idempotent create, reads from the read model, updates to workflows.

Reads never touch Temporal: the read model is projected by each workflow on every change.
Writes that need an answer (cancel, address, approve) are workflow Updates, so the workflow
alone decides, and a refusal changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from fastapi.exceptions import RequestValidationError
from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ApiError, Conflict, NotFound, Unavailable
from api.pagination import newest_first
from api.relay import ORDERS, OrderStarter, start_operation
from api.schemas import OrderPublic
from api.services.quotes import order_terms
from api.services.updates import OrderUpdate, answered, applied, run_update
from db.engine import utcnow
from db.models import Claim, Merchant, Order, OrderEvent, OrderStart
from db.order_rows import event_rows, state_columns
from domain.facilities import Facilities, Facility
from domain.orders import (
    Action,
    OrderCreate,
    OrderInput,
    OrderState,
    Status,
    TimelineEvent,
    new_state,
    refusal,
)
from domain.orders import (
    created_event as created_event_of,
)
from domain.schedule import describe_cutoff
from domain.support_ids import InvalidSupportId, generate_support_id, normalize_support_id
from domain.views import order_public
from runtime.settings import Settings
from workflows.orders import PATCHED_AT_START

# Fields added to the create request since orders were first taken: left out of its hash when
# absent, so a retry of a request sent before they existed is still the same request.
_LATER_FIELDS = ("shipping_method", "currency", "quote_id")


def request_hash(body: OrderCreate) -> str:
    absent = {name for name in _LATER_FIELDS if getattr(body, name) is None}
    fields = body.model_dump(mode="json", exclude=absent)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def create_order(
    session: AsyncSession,
    starter: OrderStarter,
    settings: Settings,
    facilities: Facilities,
    merchant: Merchant,
    body: OrderCreate,
    reorder_of: str | None = None,
    personalization_values: dict[str, dict[str, str]] | None = None,
) -> tuple[OrderPublic, bool]:
    """Creates the order and the start of its workflow; the same request again returns the
    same order.

    The order's row (with its first projection) and its start request commit in one
    transaction, and the answer does not wait for Temporal: the relay (``api.relay``) starts the
    workflow right after, and keeps trying while Temporal is down. The database's unique
    (merchant, order_reference_id) decides which of several concurrent identical requests wins.
    """
    digest = request_hash(body)
    received_at = utcnow()
    try:
        # The catalog: known products, a facility that makes them and ships them there, the
        # price and the ship-by promise (api.services.quotes).
        facility, terms = await order_terms(
            session, settings, facilities, merchant, body, received_at
        )
    except ApiError:
        # A retry of an order already taken is answered as the first time, even when its
        # quote has expired or the catalog changed since.
        found = await _same_order(session, merchant, body, digest)
        if found is None:
            raise
        starter.start_soon(found.id)
        return await render(session, OrderState.model_validate(found.state)), False
    session.expunge(merchant)  # a lost insert race rolls back; the merchant must stay loaded
    inp = OrderInput(
        order_id="ord_" + uuid.uuid4().hex,
        merchant_id=merchant.id,
        support_email=merchant.support_email,
        approval=body.approval or merchant.approval,  # type: ignore[arg-type]
        order=body,
        facility=facility.info(),
        received_at=received_at,
        personalization_email_delay=settings.personalization_email_delay,
        personalization_link_ttl=settings.personalization_link_ttl,
        print_submit_timeout=settings.print_submit_timeout,
        hold_reminder_interval=settings.hold_reminder_interval,
        hold_timeout=settings.hold_timeout,
        delivery_timeout=settings.delivery_timeout,
        production_report_timeout=settings.production_report_timeout,
        preflight=settings.preflight,
        preflight_give_up=settings.preflight_give_up,
        reorder_of=reorder_of,
        personalization_values=personalization_values,
        facility_queue_base=settings.task_queue,
        terms=terms,
        patched_at_start=list(PATCHED_AT_START),
    )
    for _ in range(SUPPORT_ID_ATTEMPTS):
        inp = inp.model_copy(update={"support_id": generate_support_id()})
        state = new_state(inp)
        created_event = created_event_of(state)
        start = await _insert(
            session, settings, merchant, facility, inp, state, created_event, digest
        )
        if start is not None:
            starter.start_soon(
                inp.order_id, ORDERS.start_of(settings, inp.order_id, inp, state, start)
            )
            return order_public(state, [created_event], utcnow()), True
        existing = (
            await session.exec(
                select(Order).where(
                    Order.merchant_id == merchant.id,
                    Order.order_reference_id == body.order_reference_id,
                )
            )
        ).first()
        if existing is None:
            continue  # the Support ID was taken (the only other unique key): draw another
        if existing.request_hash != digest:
            raise Conflict(
                f"order_reference_id {body.order_reference_id!r} is already used by order "
                f"{existing.id} with a different body",
                code="order_reference_conflict",
                details={"order_id": existing.id},
            ) from None
        starter.start_soon(existing.id)  # a no-op unless it still waits for its start
        return await render(session, OrderState.model_validate(existing.state)), False
    raise Unavailable("no unused Support ID was found for the order; retry in a moment")


async def _same_order(
    session: AsyncSession, merchant: Merchant, body: OrderCreate, digest: str
) -> Order | None:
    """The merchant's order with this reference and this very request, if there is one."""
    row = (
        await session.exec(
            select(Order).where(
                Order.merchant_id == merchant.id,
                Order.order_reference_id == body.order_reference_id,
            )
        )
    ).first()
    return row if row is not None and row.request_hash == digest else None


# A Support ID is one of 30^8: a second collision in a row means something else is wrong.
SUPPORT_ID_ATTEMPTS = 5


async def _insert(
    session: AsyncSession,
    settings: Settings,
    merchant: Merchant,
    facility: Facility,
    inp: OrderInput,
    state: OrderState,
    created_event: TimelineEvent,
    digest: str,
) -> OrderStart | None:
    """Commits the order's row (with its first projection and timeline event) and its start
    request (returned) in one transaction; None, rolled back, when a unique key refused the row.

    Three INSERTs on the session's connection: the ORM's unit of work would cost more than the
    statements themselves, for rows nobody reads back in this request."""
    received_at, body = inp.received_at, inp.order
    # The row is born with the order's first projection, so the workflow need not write one.
    row = {
        "id": inp.order_id,
        "merchant_id": merchant.id,
        "order_reference_id": body.order_reference_id,
        "support_id": inp.support_id,
        "request_hash": digest,
        "workflow_input": inp.model_dump(mode="json"),
        **state_columns(state),
        "state": state.model_dump(mode="json"),
        "version": state.version,
        "created_at": received_at,
        "updated_at": received_at,
    }
    start = OrderStart(
        order_id=inp.order_id,
        due_at=received_at + settings.start_sweep_after,
        static_summary=f"Order {body.order_reference_id} of {merchant.name}, "
        f"printed in {facility.name}"[:400],
        static_details=f"first: {_first_wait(inp, state)}"[:400],
    )
    connection = await session.connection()
    try:
        await connection.execute(sa.insert(Order), row)
        await connection.execute(sa.insert(OrderStart), start.model_dump())
        await connection.execute(sa.insert(OrderEvent), event_rows(inp.order_id, [created_event]))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return None
    return start


def _first_wait(inp: OrderInput, state: OrderState) -> str:
    if state.cutoff_at:
        return describe_cutoff(inp.facility, state.cutoff_at)
    return state.status.value.replace("_", " ")


async def get_row(session: AsyncSession, merchant: Merchant, order_id: str) -> Order:
    row = await session.get(Order, order_id)
    if row is None or row.merchant_id != merchant.id:
        raise NotFound(f"no order {order_id}", code="order_not_found")
    return row


# A page of orders' timelines and reprints, side by side, told apart by ``reprint``: built once,
# as SQLAlchemy would otherwise build it again (and its cache key) for every request.
_TIMELINES = sa.union_all(
    sa.select(
        col(OrderEvent.order_id),
        col(OrderEvent.seq),
        col(OrderEvent.at),
        col(OrderEvent.type),
        col(OrderEvent.detail),
        sa.null().label("reprint"),
        sa.null().label("claim_id"),
    ).where(col(OrderEvent.order_id).in_(sa.bindparam("ids", expanding=True))),
    sa.select(
        col(Claim.original_order_id),
        sa.null(),
        col(Claim.created_at),
        sa.null(),
        sa.null(),
        col(Claim.new_order_id),
        col(Claim.id),
    ).where(col(Claim.original_order_id).in_(sa.bindparam("ids", expanding=True))),
).order_by("order_id", "seq", "at", "claim_id")


async def _timelines(
    session: AsyncSession, order_ids: list[str]
) -> tuple[dict[str, list[TimelineEvent]], dict[str, list[str]]]:
    """Each order's timeline, and its reprints oldest first (the claims table links them), in
    one statement (``_TIMELINES``)."""
    events: dict[str, list[TimelineEvent]] = {oid: [] for oid in order_ids}
    reprints: dict[str, list[str]] = {oid: [] for oid in order_ids}
    if not order_ids:
        return events, reprints
    # Core rows, no ORM objects.
    rows = await (await session.connection()).execute(_TIMELINES, {"ids": order_ids})
    for order_id, seq, at, type_, detail, reprint, _ in rows:
        if reprint is None:
            events[order_id].append(TimelineEvent(seq=seq, at=at, type=type_, detail=detail))
        else:
            reprints[order_id].append(reprint)
    return events, reprints


async def _support_ids(session: AsyncSession, states: list[OrderState]) -> None:
    """Fills in the Support ID of orders started before Support IDs existed: their workflow
    does not know it, their row does (the migration gave every order one)."""
    missing = [s.order_id for s in states if s.support_id is None]
    if not missing:
        return
    rows = await session.exec(select(Order.id, Order.support_id).where(col(Order.id).in_(missing)))
    found = dict(rows.all())
    for s in states:
        if s.support_id is None:
            s.support_id = found.get(s.order_id)


async def render_many(session: AsyncSession, states: list[OrderState]) -> list[OrderPublic]:
    """Orders as the API shows them: their state, timeline and reprints, in one query (two for
    orders older than Support IDs)."""
    ids = [s.order_id for s in states]
    await _support_ids(session, states)
    events, reorders = await _timelines(session, ids)
    now = utcnow()
    return [order_public(s, events[s.order_id], now, reorders[s.order_id]) for s in states]


async def render(session: AsyncSession, state: OrderState) -> OrderPublic:
    return (await render_many(session, [state]))[0]


# The merchant's order's state as the JSON text it is stored as: validated straight from the
# text, without the rest of the row (its workflow input is the larger part of it) or an ORM object.
_STATE = sa.select(sa.cast(col(Order.state), sa.Text)).where(
    col(Order.id) == sa.bindparam("order_id"), col(Order.merchant_id) == sa.bindparam("merchant_id")
)


async def get_order(session: AsyncSession, merchant: Merchant, order_id: str) -> OrderPublic:
    state = (
        await (await session.connection()).execute(
            _STATE, {"order_id": order_id, "merchant_id": merchant.id}
        )
    ).scalar_one_or_none()
    if state is None:
        raise NotFound(f"no order {order_id}", code="order_not_found")
    return await render(session, OrderState.model_validate_json(state))


# Lists show each order's state: its workflow input, the larger of its two JSON columns, is
# neither read nor decoded (and reading it by mistake raises instead of a query per row).
_LISTED = select(Order).options(
    defer(cast(QueryableAttribute[Any], Order.workflow_input), raiseload=True)
)


async def list_orders(
    session: AsyncSession,
    merchant: Merchant,
    *,
    status: Status | None,
    order_reference_id: str | None,
    support_id: str | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[OrderPublic], str | None]:
    """The merchant's orders, newest first; ``support_id`` as a customer typed it (any case,
    spaces around it) or a 422 that says what a Support ID looks like."""
    query = _LISTED.where(Order.merchant_id == merchant.id)
    if support_id is not None:
        try:
            wanted = normalize_support_id(support_id)
        except InvalidSupportId as err:
            raise RequestValidationError(
                [{"loc": ("query", "support_id"), "msg": str(err), "type": "value_error"}]
            ) from None
        query = query.where(Order.support_id == wanted)
    if status is not None:
        query = query.where(Order.status == status.value)
    if order_reference_id is not None:
        query = query.where(Order.order_reference_id == order_reference_id)
    page, next_cursor = await newest_first(session, query, Order, limit=limit, cursor=cursor)
    states = [OrderState.model_validate(r.state) for r in page]
    return await render_many(session, states), next_cursor


async def update_order(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: Order,
    action: Action | None,
    update: OrderUpdate,
    arg: Any = None,
    *,
    idempotency_key: str | None = None,
) -> OrderPublic:
    """Runs an ``OrderWorkflow`` Update; a refusal from the workflow becomes a 409 with its code."""

    start = await start_operation(session, settings, row)
    await session.commit()  # no database connection is held while the workflow answers

    async def closed() -> ApiError | OrderState:
        # The workflow has closed: the order's last state says why nothing can change, or that
        # this Update (a retry with the same key) made its change before it closed.
        await session.refresh(row)
        last = OrderState.model_validate(row.state)
        if applied(last, update, idempotency_key):
            return last
        why = action and refusal(action, last.status, last.cutoff_at, utcnow(), last.hold)
        if why:
            return Conflict(why.message, code=why.code)
        return Conflict(f"the order is {last.status.value} and closed", code="order_closed")

    state = await run_update(
        client,
        row.id,
        update,
        arg,
        patience=settings.update_timeout,
        on_closed=closed,
        idempotency_key=idempotency_key,
        start=start,
    )
    return await render(session, await answered(session, row, state))


# ---------------------------------------------------------------------------- portal search


@dataclass(frozen=True)
class OrderSearch:
    """What the portal's order list is filtered by (``/portal/orders``); None: not filtered.

    ``created_from`` is inclusive, ``created_before`` exclusive (the caller turns the days a
    person picked, in the shop's time zone, into instants). ``text`` is what they typed: an
    order reference (exact) or order id, a Support ID (as a customer reads it out: any case,
    spaces anywhere), or part of the customer's name or e-mail address (any case).
    """

    status: Status | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None
    country: str | None = None
    text: str | None = None


_LIKE_SPECIAL = re.compile(r"([\\%_])")


def support_id_in(text: str) -> str | None:
    """The Support ID ``text`` is, as stored, when it is one (``pf 7kq2 m9xr``, ``PF7KQ2M9XR``
    and `` pf-7kq2m9xr `` all are); None otherwise."""
    compact = "".join(text.split()).upper()
    if compact.startswith("PF") and not compact.startswith("PF-"):
        compact = "PF-" + compact[2:]
    try:
        return normalize_support_id(compact)
    except InvalidSupportId:
        return None


async def search_orders(
    session: AsyncSession,
    merchant: Merchant,
    search: OrderSearch,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[OrderState], str | None]:
    """The merchant's orders that match ``search``, newest first (``api.pagination``), as their
    workflows last projected them (without timelines: a list needs none)."""
    query = _LISTED.where(Order.merchant_id == merchant.id)
    if search.status is not None:
        query = query.where(Order.status == search.status.value)
    if search.created_from is not None:
        query = query.where(col(Order.created_at) >= search.created_from)
    if search.created_before is not None:
        query = query.where(col(Order.created_at) < search.created_before)
    if search.country is not None:
        query = query.where(Order.country == search.country.upper())
    typed = (search.text or "").strip()
    text = " ".join(typed.split())
    if text:
        # ``customer`` is stored lowercased; LIKE's wildcards typed by a person match themselves.
        pattern = "%" + _LIKE_SPECIAL.sub(r"\\\1", text.lower()) + "%"
        matches = [
            col(Order.order_reference_id) == typed,
            col(Order.id) == typed,
            col(Order.customer).like(pattern, escape="\\"),
        ]
        support_id = support_id_in(text)
        if support_id is not None:
            matches.append(col(Order.support_id) == support_id)
        query = query.where(or_(*matches))
    page, next_cursor = await newest_first(session, query, Order, limit=limit, cursor=cursor)
    states = [OrderState.model_validate(r.state) for r in page]
    await _support_ids(session, states)
    return states, next_cursor
