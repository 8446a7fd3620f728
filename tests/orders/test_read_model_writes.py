"""How projections write the read model (``activities.read_model``), on SQLite and PostgreSQL.

A workflow task that projected a change as a local activity and was then lost (its worker
SIGKILLed, or its task timed out) leaves its version with its own moment; the task that
replaces it makes the same version later, and only that one is in the history. So at an equal
version the later ``updated_at`` wins, with its timeline rows, in whichever order the two
writes land; an older version never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import JSON, Column, Integer, String, event, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import DeclarativeBase

from activities.read_model import GroupCommit, insert_once, write_newer
from db.engine import create_engine
from db.models import UTCDateTime

T0 = datetime(2026, 12, 4, 15, 41, 42, 334151, tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "read_model_rows"
    id = Column(String(40), primary_key=True)
    version = Column(Integer, nullable=False)
    updated_at = Column(UTCDateTime(), nullable=False)
    state = Column(JSON, nullable=False)


class Entry(Base):
    __tablename__ = "read_model_entries"
    row_id = Column(String(40), primary_key=True)
    seq = Column(Integer, primary_key=True)
    at = Column(UTCDateTime(), nullable=False)


class State(BaseModel):
    version: int
    updated_at: datetime


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The database with this test's two tables, dropped afterwards."""
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()


async def _rows(engine: AsyncEngine, ids: list[str]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            Row.__table__.insert(),
            [{"id": i, "version": 0, "updated_at": T0, "state": {}} for i in ids],
        )


async def test_the_later_projection_of_a_version_wins_an_older_version_never(
    engine: AsyncEngine,
) -> None:
    await _rows(engine, ["o"])

    async def project(version: int, at: datetime) -> bool:
        async with engine.begin() as conn:
            wrote = await write_newer(conn, Row, "o", State(version=version, updated_at=at))
            await insert_once(
                conn, Entry, [{"row_id": "o", "seq": version, "at": at}], replace=wrote
            )
            return wrote

    async def stored() -> tuple[Any, ...]:
        async with engine.connect() as conn:
            row = (await conn.execute(select(Row.version, Row.updated_at))).one()
            entries = (await conn.execute(select(Entry.seq, Entry.at))).all()
            return (row.version, row.updated_at, [tuple(e) for e in entries])

    lost, kept = T0, T0 + timedelta(seconds=26)
    assert await project(1, lost)  # the lost task's local activity
    assert await project(1, kept)  # the task that replaced it: what the history holds
    assert await stored() == (1, kept, [(1, kept)])
    assert not await project(1, lost)  # the lost one's write, landing late
    assert not await project(1, kept)  # a plain retry changes nothing
    assert await stored() == (1, kept, [(1, kept)])
    later = kept + timedelta(seconds=1)
    assert await project(2, later)
    assert not await project(1, later + timedelta(seconds=5))  # an older version, late
    assert await stored() == (2, later, [(1, kept), (2, later)])


async def _versions(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {r.id: r.version for r in await conn.execute(select(Row.id, Row.version))}


async def _write(conn: AsyncConnection, item: tuple[str, int]) -> bool:
    row_id, version = item
    if version < 0:
        raise ValueError(f"no version {version}")
    state = State(version=version, updated_at=T0 + timedelta(seconds=version))
    wrote = await write_newer(conn, Row, row_id, state)
    await insert_once(conn, Entry, [{"row_id": row_id, "seq": version, "at": T0}], replace=wrote)
    return wrote


async def test_writes_that_arrive_together_share_a_transaction(engine: AsyncEngine) -> None:
    commits = 0

    @event.listens_for(engine.sync_engine, "commit")
    def _count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    ids = [f"o{n}" for n in range(40)]
    await _rows(engine, ids)
    writes = GroupCommit(engine, _write)
    commits = 0
    wrote = await asyncio.gather(*(writes.submit((i, 1)) for i in ids))
    assert wrote == [True] * 40
    assert 2 <= commits < 40  # the first alone, the rest in batches
    assert await _versions(engine) == dict.fromkeys(ids, 1)
    # The same order twice in one batch (the one behind o1's write): in the order they came,
    # and the older never wins.
    commits = 0
    both = [writes.submit(("o1", 2)), writes.submit(("o0", 3)), writes.submit(("o0", 2))]
    assert await asyncio.gather(*both) == [True, True, False]
    assert commits == 2
    assert (await _versions(engine))["o0"] == 3


async def test_a_bad_write_fails_only_its_own_caller(engine: AsyncEngine) -> None:
    await _rows(engine, ["a", "b", "c"])
    writes = GroupCommit(engine, _write)
    results = await asyncio.gather(
        writes.submit(("a", 1)),  # alone: the others arrive while it is written
        writes.submit(("b", 1)),
        writes.submit(("c", -1)),
        writes.submit(("c", 1)),
        return_exceptions=True,
    )
    assert results[:2] == [True, True] and results[3] is True
    assert isinstance(results[2], ValueError)
    assert await _versions(engine) == {"a": 1, "b": 1, "c": 1}


async def test_a_batch_ends_for_the_others_when_its_starter_is_cancelled(
    engine: AsyncEngine,
) -> None:
    await _rows(engine, ["a", "b", "c"])
    entered = asyncio.Event()

    async def slow(conn: AsyncConnection, item: tuple[str, int]) -> bool:
        entered.set()
        await asyncio.sleep(0.05)
        return await _write(conn, item)

    writes = GroupCommit(engine, slow)
    alone = asyncio.create_task(writes.submit(("a", 1)))
    await entered.wait()  # a is being written; b and c wait for the next turn
    entered.clear()
    b = asyncio.create_task(writes.submit(("b", 1)))
    c = asyncio.create_task(writes.submit(("c", 1)))
    assert await alone is True
    await entered.wait()  # b's task writes the batch of b and c
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    async with asyncio.timeout(10):
        assert await c is True
    assert (await _versions(engine))["c"] == 1
