"""How projection activities write a workflow's state to its read model.

A row is written only over an older version of itself (``write_newer``), so a retried or late
projection never overwrites a newer one; the rows that hang off it (timeline events, messages,
deadlines) are inserted once (``insert_once``): their ids come with them, so a retry finds them
stored and a late projection adds nothing twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import insert_new


async def write_newer(
    conn: AsyncConnection, table: Any, row_id: str, state: Any, **columns: Any
) -> bool:
    """Writes ``state`` (a workflow's state: a pydantic model with ``version`` and
    ``updated_at``) and ``columns`` over row ``row_id`` of ``table``, unless the row has this
    version or a newer one already; returns whether it wrote."""
    result = await conn.execute(
        update(table)
        .where(table.id == row_id, table.version < state.version)
        .values(
            **columns,
            state=state.model_dump(mode="json"),
            version=state.version,
            updated_at=state.updated_at,
        )
    )
    return bool(result.rowcount)


async def insert_once(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Inserts the ``rows`` of ``table`` that are not there yet (by primary key)."""
    if rows:
        await conn.execute(insert_new(conn.engine, table, rows))
