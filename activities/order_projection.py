"""The read model: every change of an order's workflow state lands here through one activity.

Runs as a local activity (cheap, no extra history events beyond a marker). Writes are
idempotent and ordered by the state's ``version``, so a retried or late projection can never
overwrite a newer one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from temporalio import activity

from contracts.orders import Projection
from db.engine import insert_new
from db.models import Order, OrderEvent

if TYPE_CHECKING:
    from activities.webhooks.emitter import WebhookEmitter


class ProjectionActivities:
    def __init__(self, engine: AsyncEngine, webhooks: WebhookEmitter | None = None) -> None:
        self._engine = engine
        # Merchants' webhooks for what changed; after the transaction, so a receiver only ever
        # hears of a change the read model already shows.
        self._webhooks = webhooks

    @activity.defn
    async def project_order(self, projection: Projection) -> None:
        state = projection.state
        async with self._engine.begin() as conn:
            if state.support_id is None:
                # An order started before Support IDs: its row has one (the migration gave it),
                # and its webhooks show it as the API does.
                found = await conn.scalar(
                    select(col(Order.support_id)).where(col(Order.id) == state.order_id)
                )
                state = state.model_copy(update={"support_id": found})
            await conn.execute(
                update(Order)
                .where(Order.id == state.order_id, Order.version < state.version)  # type: ignore[arg-type]
                .values(
                    status=state.status.value,
                    facility_id=state.facility.id,
                    cutoff_at=state.cutoff_at,
                    state=state.model_dump(mode="json"),
                    version=state.version,
                    updated_at=state.updated_at,
                )
            )
            if projection.new_events:
                rows = [
                    {
                        "order_id": state.order_id,
                        "seq": e.seq,
                        "at": e.at,
                        "type": e.type,
                        "detail": e.detail,
                    }
                    for e in projection.new_events
                ]
                await conn.execute(insert_new(self._engine, OrderEvent, rows))
        if self._webhooks is not None and projection.new_events:
            await self._webhooks.order_changed(state, projection.new_events)
