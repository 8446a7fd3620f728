"""Keyset pagination, newest first, for every list endpoint.

The cursor is the (created_at, id) of the last row a page showed, opaque to clients; rows are
never skipped or repeated when new ones arrive between pages.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, or_
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from api.errors import ApiError

Row = TypeVar("Row", bound=SQLModel)


def _encode(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError) as err:
        raise ApiError("cursor is not one this API returned", code="invalid_cursor") from err


async def newest_first(
    session: AsyncSession,
    query: SelectOfScalar[Row],
    model: Any,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """One page of ``query`` over ``model`` (which has ``created_at`` and ``id``), and the
    cursor of the next page, if there is one."""
    created_at, row_id = col(model.created_at), col(model.id)
    if cursor is not None:
        created, last_id = _decode(cursor)
        query = query.where(
            or_(created_at < created, and_(created_at == created, row_id < last_id))
        )
    query = query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
    rows = list(await session.exec(query))
    page = rows[:limit]
    more = len(rows) > limit
    return page, (_encode(page[-1].created_at, page[-1].id) if more else None)  # type: ignore[attr-defined]
