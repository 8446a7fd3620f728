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

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import BindParameter, Update, and_, bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import insert_statement

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


async def write_newer(
    conn: AsyncConnection, table: Any, row_id: str, state: Any, **columns: Any
) -> bool:
    """Writes ``state`` (a workflow's state: a pydantic model with ``version`` and
    ``updated_at``) and ``columns`` over row ``row_id`` of ``table``, unless the row has a newer
    version already, or this version made at the same moment or later (see the module's
    docstring); returns whether it wrote."""
    values = {f"new_{name}": value for name, value in columns.items()}
    result = await conn.execute(
        _update_if_newer(table, tuple(columns)),
        {
            **values,
            "row_id": row_id,
            "new_state": state.model_dump(mode="json"),
            "new_version": state.version,
            "new_updated_at": state.updated_at,
        },
    )
    return bool(result.rowcount)


@functools.cache
def _update_if_newer(table: Any, columns: tuple[str, ...]) -> Update:
    """``write_newer``'s statement for ``table`` and ``columns``, its values bound when it runs:
    built once, so each projection pays for its execution only, not for building it again."""
    c = table.__table__.c

    def new(name: str) -> BindParameter[Any]:
        return bindparam(f"new_{name}", type_=c[name].type)

    version, updated_at = new("version"), new("updated_at")
    newer = or_(c.version < version, and_(c.version == version, c.updated_at < updated_at))
    return (
        update(table.__table__)
        .where(c.id == bindparam("row_id", type_=c.id.type), newer)
        .values(
            {name: new(name) for name in columns}
            | {"state": new("state"), "version": version, "updated_at": updated_at}
        )
    )


async def insert_once(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], *, replace: bool = False
) -> None:
    """Inserts the ``rows`` of ``table`` that are not there yet (by primary key); with
    ``replace`` (the projection that ``write_newer`` just wrote) those there are overwritten."""
    if rows:
        await conn.execute(insert_statement(conn.dialect.name, table, replace=replace), rows)


class GroupCommit(Generic[ItemT, ResultT]):
    """Writes that arrive while one transaction runs go together in the next (a group commit).

    A cutoff wave projects hundreds of orders within a second; one transaction each means as many
    turns at the database's write lock, commits and pool round trips. ``write`` writes one item
    on the connection it is given; ``submit`` waits until its item is committed, in its own
    transaction when nothing else is waiting, or with the items that arrived meanwhile. When
    a batch fails, each of its items is written again alone, so one bad item fails only its own
    caller (its activity retries as before). A batch runs to its end even when the caller that
    started it is cancelled: the others wait on it.
    """

    def __init__(
        self, engine: AsyncEngine, write: Callable[[AsyncConnection, ItemT], Awaitable[ResultT]]
    ) -> None:
        self._engine = engine
        self._write = write
        self._waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._turn = asyncio.Lock()

    async def submit(self, item: ItemT) -> ResultT:
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        try:
            async with self._turn:
                if not done.done():
                    batch, self._waiting = self._waiting, []
                    await asyncio.shield(self._commit(batch))
            return await done
        except asyncio.CancelledError:
            done.cancel()  # its item may still be written; nobody waits for the answer
            raise

    async def _commit(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        try:
            async with self._engine.begin() as conn:
                results = [await self._write(conn, item) for item, _ in batch]
        except Exception as err:
            if len(batch) == 1:
                _settle(batch[0][1], error=err)
            else:  # each again alone: only the bad one fails
                for one in batch:
                    await self._commit([one])
            return
        for (_, done), result in zip(batch, results, strict=True):
            _settle(done, result=result)


def _settle(
    done: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    if done.done():  # its caller was cancelled (``submit``)
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
