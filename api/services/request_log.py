"""What support sees of a merchant's failed requests: the rows ``api.request_ids`` writes for
every answer of 400 or above to a merchant (request id, method, route template, status, error
code; never a body, a header or a query string), kept ``KEEP`` and pruned by the API process
(``api.pruning``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import NotFound
from api.pruning import KEEP
from api.schemas import RequestLogEntry
from db.models import RequestLog

MAX_IDS = 100


def _entry(row: RequestLog) -> RequestLogEntry:
    return RequestLogEntry.model_validate(row, from_attributes=True)


async def requests_for(
    session: AsyncSession, merchant_id: str, request_ids: Iterable[str]
) -> list[RequestLogEntry]:
    """The merchant's own failed requests among ``request_ids`` (at most 100 looked at), oldest
    first; ids that are unknown, another merchant's, or of a request that succeeded are absent."""
    wanted = list(dict.fromkeys(request_ids))[:MAX_IDS]
    if not wanted:
        return []
    rows = await session.exec(
        select(RequestLog)
        .where(RequestLog.merchant_id == merchant_id, col(RequestLog.request_id).in_(wanted))
        .order_by(col(RequestLog.created_at), col(RequestLog.id))
    )
    return [_entry(row) for row in rows.all()]


async def request_for(session: AsyncSession, merchant_id: str, request_id: str) -> RequestLogEntry:
    """``GET /v1/requests/{request_id}``: the latest of the merchant's failed requests with that
    id, else 404."""
    found = await requests_for(session, merchant_id, [request_id])
    if not found:
        raise NotFound(f"no failed request {request_id} of yours in the last {KEEP.days} days")
    return found[-1]
