"""How projection activities write a workflow's state to its read model.

A row is written only over an older version of itself (``write_newer``), so a retried or late
projection never overwrites a newer one; the rows that hang off it (timeline events, messages,
deadlines) are inserted once (``insert_once``): their ids come with them, so a retry finds them
stored and a late projection adds nothing twice.

One version can be projected twice with different contents: a workflow task that projected a
change as a local activity and was then lost (its worker killed, or its task timed out) leaves
that version with its own ``updated_at`` and timeline times, and the task that replaces it
makes the same version at a later moment (``workflow.now()``). The later one is what the
history holds, so at an equal version the later ``updated_at`` wins, with its rows
(``insert_once(..., replace=True)``), whichever of the two writes lands last.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import insert_new, insert_or_replace


async def write_newer(
    conn: AsyncConnection, table: Any, row_id: str, state: Any, **columns: Any
) -> bool:
    """Writes ``state`` (a workflow's state: a pydantic model with ``version`` and
    ``updated_at``) and ``columns`` over row ``row_id`` of ``table``, unless the row has a newer
    version already, or this version made at the same moment or later (see the module's
    docstring); returns whether it wrote."""
    newer = or_(
        table.version < state.version,
        and_(table.version == state.version, table.updated_at < state.updated_at),
    )
    result = await conn.execute(
        update(table)
        .where(table.id == row_id, newer)
        .values(
            **columns,
            state=state.model_dump(mode="json"),
            version=state.version,
            updated_at=state.updated_at,
        )
    )
    return bool(result.rowcount)


async def insert_once(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], *, replace: bool = False
) -> None:
    """Inserts the ``rows`` of ``table`` that are not there yet (by primary key); with
    ``replace`` (the projection that ``write_newer`` just wrote) those there are overwritten."""
    if rows:
        insert = insert_or_replace if replace else insert_new
        await conn.execute(insert(conn.engine, table, rows))
