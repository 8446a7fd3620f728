"""``GET /v1/support/standards``: how a merchant's promises were kept over the last 30 days.

- ``customer_reply``: the reply deadlines that started (a customer message) in the window,
  settled in time or missed, and those still running (``customer_contact_deadlines``);
- ``ship_by``: the orders whose ship-by promise came due in the window, shipped by it or not,
  and those whose promise is still ahead (the ``orders`` read model's ``ships_by`` and
  ``shipped_at``). Canceled orders promise nothing and are not counted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.schemas import ReplyStandards, ShipByStandards, SupportStandards
from db.engine import utcnow
from db.models import CustomerContactDeadline, Merchant, Order
from domain.orders import Status
from domain.support import SupportConfig

WINDOW = timedelta(days=30)


async def standards(
    session: AsyncSession, support: SupportConfig, merchant: Merchant
) -> SupportStandards:
    until = utcnow()
    since = until - WINDOW
    return SupportStandards(
        merchant_id=merchant.id,
        customer_reply=await _customer_reply(session, support, merchant, since, until),
        ship_by=await _ship_by(session, merchant, since, until),
    )


async def _customer_reply(
    session: AsyncSession,
    support: SupportConfig,
    merchant: Merchant,
    since: datetime,
    until: datetime,
) -> ReplyStandards:
    rows = await session.exec(
        select(CustomerContactDeadline.outcome, func.count())
        .where(
            CustomerContactDeadline.merchant_id == merchant.id,
            col(CustomerContactDeadline.started_at) >= since,
        )
        .group_by(CustomerContactDeadline.outcome)
    )
    counts = {outcome: int(n) for outcome, n in rows.all()}
    in_time, missed = counts.get("in_time", 0), counts.get("missed", 0)
    due = in_time + missed
    return ReplyStandards(
        window_days=WINDOW.days,
        since=since,
        until=until,
        target=_iso_duration(support.customer_reply.target),
        deadlines=due,
        replied_in_time=in_time,
        missed=missed,
        reply_in_time_rate=_rate(in_time, due),
        pending=counts.get(None, 0),
    )


async def _ship_by(
    session: AsyncSession, merchant: Merchant, since: datetime, until: datetime
) -> ShipByStandards:
    ships_by, shipped_at = col(Order.ships_by), col(Order.shipped_at)
    kept = and_(shipped_at.is_not(None), shipped_at <= ships_by)
    row = (
        await session.exec(
            select(
                func.count().filter(ships_by <= until),
                func.sum(case((kept, 1), else_=0)).filter(ships_by <= until),
                func.count().filter(ships_by > until, shipped_at.is_(None)),
            ).where(
                col(Order.merchant_id) == merchant.id,
                ships_by >= since,
                col(Order.status) != Status.CANCELED.value,
            )
        )
    ).one()
    due, in_time, pending = int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)
    return ShipByStandards(
        window_days=WINDOW.days,
        since=since,
        until=until,
        orders=due,
        shipped_in_time=in_time,
        late=due - in_time,
        shipped_in_time_rate=_rate(in_time, due),
        pending=pending,
    )


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _iso_duration(value: timedelta) -> str:
    days, seconds = value.days, value.seconds
    out = "P" + (f"{days}D" if days else "")
    if seconds:
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        out += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
        out += f"{secs}S" if secs else ""
    return out if out != "P" else "PT0S"
