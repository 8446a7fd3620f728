"""The orders' read model: every change of an order's workflow state lands in ``orders`` and
``order_events`` through ``project_order``. The order workflow runs it as a local activity for
a change of its own, and as a regular activity for a batch holding an Update's change. An Update
answers with that projection as soon as its activity is scheduled, and the API writes the same
projection before it answers the merchant (``write_projection``), so what an Update answered the
API already shows.

Writes are idempotent and ordered by the state's ``version`` (``activities.read_model``), so a
retried or late projection can never overwrite a newer one. A projection leaves out the large
parts of the state (items, metadata) that did not change since the one before it: they are
taken from the row, which holds them as they are (``contracts.orders.Projection``). The
merchant's webhooks are stored and queued after the transaction, so a receiver only hears of a
change the read model shows. Projections that arrive while one is being written are written
together in the next transaction (``GroupCommit``): a cutoff wave takes the database's write
lock a few times instead of once per order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col
from temporalio import activity

from activities.read_model import GroupCommit, insert_once, write_newer
from contracts.orders import Projection, with_large_parts
from db.models import Order, OrderEvent
from db.order_rows import event_rows, state_columns
from domain.orders import OrderState

if TYPE_CHECKING:
    from activities.webhooks.emitter import WebhookEmitter


class ProjectionActivities:
    def __init__(self, engine: AsyncEngine, webhooks: WebhookEmitter | None = None) -> None:
        self._writes = GroupCommit(engine, write_projection)
        self._webhooks = webhooks

    @activity.defn
    async def project_order(self, projection: Projection) -> None:
        state = await self._writes.submit(projection)
        if self._webhooks is not None and projection.new_events:
            await self._webhooks.order_changed(state, projection.new_events)


async def write_projection(conn: AsyncConnection, projection: Projection) -> OrderState:
    """Writes one projection on ``conn``; returns the state as written (large parts filled in).

    The API writes an Update's answer with it too (``contracts.orders.UpdateAnswer``): the
    workflow's own projection of that version then changes nothing, whichever lands first."""
    state = projection.given()
    if projection.unchanged or state.support_id is None:
        row = (
            await conn.execute(
                select(col(Order.state), col(Order.support_id))
                .where(col(Order.id) == state.order_id)
                .with_for_update()
            )
        ).one()
        if projection.unchanged:
            # The large parts the workflow left out are the row's, as they are.
            stored = OrderState.model_validate(row.state)
            state = with_large_parts(state, stored, projection.unchanged)
        if state.support_id is None:
            # An order started before Support IDs: its row has one (the migration gave
            # it), and its webhooks show it as the API does.
            state = state.model_copy(update={"support_id": row.support_id})
    wrote = await write_newer(conn, Order, state.order_id, state, **state_columns(state))
    events = event_rows(state.order_id, projection.new_events)
    await insert_once(conn, OrderEvent, events, replace=wrote)
    return state
