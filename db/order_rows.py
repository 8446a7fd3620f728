"""The orders read model's values taken from an order's state, in one place for the two
writers: the API, which stores a new order with its first projection (``api.services.orders``),
and the projection of every later change (``activities.order_projection``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from domain.orders import OrderState, TimelineEvent
from domain.portal import search_columns


def state_columns(state: OrderState) -> dict[str, Any]:
    """The ``orders`` columns derived from the state, beside the state itself."""
    return {
        "status": state.status.value,
        "facility_id": state.facility.id,
        "cutoff_at": state.cutoff_at,
        "ships_by": state.ships_by,
        "shipped_at": state.shipments[0].shipped_at if state.shipments else None,
        **search_columns(state.shipping_address),
    }


def event_rows(order_id: str, events: Iterable[TimelineEvent]) -> list[dict[str, Any]]:
    """The ``order_events`` rows of timeline events."""
    return [
        {"order_id": order_id, "seq": e.seq, "at": e.at, "type": e.type, "detail": e.detail}
        for e in events
    ]
