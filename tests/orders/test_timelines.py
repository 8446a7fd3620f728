"""An order's timeline and its reprints as the API shows them (``api.services.orders``), read
for a page of orders in one statement, on SQLite and PostgreSQL: each order gets its own events
in their order and its own reprints oldest first, and an order with neither gets empty lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from api.services.orders import _timelines
from db.engine import session_factory
from db.models import Claim, Order, OrderEvent
from tests.helpers.webhook_delivery import add_merchant

T0 = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)


def _order(n: int, merchant_id: str) -> Order:
    return Order(
        id=f"ord_{n}",
        merchant_id=merchant_id,
        order_reference_id=f"ref-{n}",
        support_id=f"PF-{n:08d}",
        request_hash="h",
        workflow_input={},
        status="delivered",
        facility_id="fac",
        state={},
        created_at=T0,
        updated_at=T0,
    )


def _claim(original: int, reprint: int, at: datetime, merchant_id: str) -> Claim:
    return Claim(
        id=f"clm_{reprint}",
        merchant_id=merchant_id,
        original_order_id=f"ord_{original}",
        new_order_id=f"ord_{reprint}",
        reason="damaged",
        description="",
        created_at=at,
    )


async def test_each_order_gets_its_own_timeline_and_reprints_in_order(engine: AsyncEngine) -> None:
    merchant_id = await add_merchant(engine, webhook_url=None)
    async with session_factory(engine)() as session:
        session.add_all(_order(n, merchant_id) for n in range(1, 7))
        await session.flush()
        # Written out of order: a timeline comes by its seq, reprints by when they were claimed.
        session.add_all(
            [
                OrderEvent(order_id="ord_1", seq=3, at=T0 + timedelta(minutes=3), type="delivered"),
                OrderEvent(
                    order_id="ord_1", seq=1, at=T0, type="created", detail={"items": ["a", "b"]}
                ),
                OrderEvent(order_id="ord_2", seq=1, at=T0, type="created"),
                OrderEvent(order_id="ord_1", seq=2, at=T0 + timedelta(minutes=2), type="printed"),
                _claim(1, 5, T0 + timedelta(minutes=9), merchant_id),
                _claim(1, 4, T0 + timedelta(minutes=1), merchant_id),
                _claim(2, 6, T0 + timedelta(minutes=5), merchant_id),
            ]
        )
        await session.commit()

    async with session_factory(engine)() as session:
        events, reprints = await _timelines(session, ["ord_1", "ord_2", "ord_3"])
        assert await _timelines(session, []) == ({}, {})

    assert [(e.seq, e.type) for e in events["ord_1"]] == [
        (1, "created"),
        (2, "printed"),
        (3, "delivered"),
    ]
    first = events["ord_1"][0]
    assert first.at == T0 and first.detail == {"items": ["a", "b"]}
    assert events["ord_1"][1].detail is None
    assert [(e.seq, e.type) for e in events["ord_2"]] == [(1, "created")]
    assert events["ord_3"] == []
    assert reprints == {"ord_1": ["ord_4", "ord_5"], "ord_2": ["ord_6"], "ord_3": []}
