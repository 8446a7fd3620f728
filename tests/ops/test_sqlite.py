"""SQLite as printflow drives it (``db.sqlite``).

One writer of a process at a time: a process's write transactions wait their turn on the event
loop instead of in SQLite's busy handler, whose sleeps grow to 100 ms while the lock is free;
SQLite's own wait stays for the other processes on the file. Each of those tests sets SQLite's
busy timeout of the engine's connections to 0, so that a write which finds the file's lock taken
fails at once instead of waiting in SQLite: where these tests pass, no write of the process
waited there.

One trip to aiosqlite's thread per statement, with everything SQLAlchemy reads of a cursor.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine


def _engine(path: Path, busy_ms: int = 0) -> AsyncEngine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine.sync_engine, "connect")
    def _busy(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    return engine


async def _table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE rows (id INTEGER PRIMARY KEY, writer INTEGER)"))


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM rows"))).scalar_one())


async def test_writers_of_one_process_take_turns(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "one.db")
    try:
        await _table(engine)

        async def write(n: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO rows (writer) VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.01)  # the transaction stays open across an await
                await conn.execute(text("UPDATE rows SET writer = :n WHERE writer = :n"), {"n": n})

        await asyncio.gather(*(write(n) for n in range(12)))
        assert await _count(engine) == 12
    finally:
        await engine.dispose()


async def test_a_rolled_back_or_failed_write_gives_its_turn_back(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "back.db")
    try:
        await _table(engine)
        with pytest.raises(RuntimeError):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO rows (id, writer) VALUES (1, 0)"))
                raise RuntimeError("the caller changed its mind")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO rows (id, writer) VALUES (1, 1)"))
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO rows (id, writer) VALUES (1, 2)"))
        async with engine.connect() as conn:  # never committed: the pool rolls it back
            await conn.execute(text("INSERT INTO rows (id, writer) VALUES (2, 3)"))
        async with asyncio.timeout(5), engine.begin() as conn:
            await conn.execute(text("INSERT INTO rows (id, writer) VALUES (3, 4)"))
        assert await _count(engine) == 2
    finally:
        await engine.dispose()


async def test_another_process_holding_the_lock_is_waited_for_in_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    engine = _engine(path, busy_ms=10_000)
    try:
        await _table(engine)
        other = sqlite3.connect(path, isolation_level=None)  # as the API beside the worker
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO rows (writer) VALUES (-1)")

        async def write(n: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO rows (writer) VALUES (:n)"), {"n": n})

        writes = asyncio.gather(*(write(n) for n in range(3)))
        await asyncio.sleep(0.2)
        assert not writes.done()
        other.execute("COMMIT")
        other.close()
        await writes
        assert await _count(engine) == 4
    finally:
        await engine.dispose()


async def test_a_writer_cancelled_as_its_turn_comes_stops(tmp_path: Path) -> None:
    """A shutdown cancels the API's background writers (the pruning): one cancelled in the very
    step its turn came must stop, not write and carry on (it once did, and the shutdown waited
    for it for ever)."""
    engine = _engine(tmp_path / "cancel.db")
    try:
        await _table(engine)
        async with engine.connect() as conn:
            await conn.execute(text("INSERT INTO rows (id, writer) VALUES (1, 1)"))  # our turn

            async def second() -> None:
                async with engine.begin() as other:
                    await other.execute(text("INSERT INTO rows (id, writer) VALUES (2, 2)"))

            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.1)  # it waits for the turn
            await conn.commit()  # gives the turn to it ...
            waiting.cancel()  # ... and it is cancelled before it ran again
            with pytest.raises(asyncio.CancelledError):
                await waiting
        async with asyncio.timeout(5), engine.begin() as conn:  # the turn is free again
            await conn.execute(text("INSERT INTO rows (id, writer) VALUES (3, 3)"))
        async with engine.connect() as conn:
            ids = (await conn.execute(text("SELECT id FROM rows ORDER BY id"))).scalars().all()
        assert ids == [1, 3]
    finally:
        await engine.dispose()


async def test_a_statement_is_one_trip_to_the_connections_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call into aiosqlite's thread is a wake-up of it and then of the event loop; a
    statement used to make four (open a cursor, execute, fetch the rows, close the cursor)."""
    engine = _engine(tmp_path / "trips.db")
    try:
        await _table(engine)
        trips = 0
        execute = aiosqlite.Connection._execute

        async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal trips
            trips += 1
            return await execute(self, fn, *args, **kwargs)

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        async with engine.connect() as conn:
            trips = 0
            await conn.execute(text("INSERT INTO rows (id, writer) VALUES (1, 1), (2, 2)"))
            assert trips == 1
            rows = (await conn.execute(text("SELECT id, writer FROM rows ORDER BY id"))).all()
            assert trips == 2
            await conn.commit()
            assert trips == 3
        assert [tuple(r) for r in rows] == [(1, 1), (2, 2)]
        # Only reads: no transaction began, and none is rolled back when the pool takes the
        # connection back.
        trips = 0
        async with engine.connect() as conn:
            await conn.execute(text("SELECT count(*) FROM rows"))
        assert trips == 1
    finally:
        await engine.dispose()


async def test_a_statement_tells_what_sqlalchemy_asks_of_a_cursor(tmp_path: Path) -> None:
    """Rows and their column names, the rows an UPDATE changed, the id an INSERT made, many
    parameter sets at once, and SQLite's errors as SQLAlchemy's."""
    engine = _engine(tmp_path / "cursor.db")
    try:
        await _table(engine)
        async with engine.begin() as conn:
            made = await conn.execute(text("INSERT INTO rows (writer) VALUES (7)"))
            assert made.lastrowid == 1
            await conn.execute(
                text("INSERT INTO rows (id, writer) VALUES (:id, :w)"),
                [{"id": 10, "w": 1}, {"id": 11, "w": 1}, {"id": 12, "w": 2}],
            )
            changed = await conn.execute(text("UPDATE rows SET writer = 3 WHERE writer = 1"))
            assert changed.rowcount == 2
            none = await conn.execute(text("SELECT id, writer FROM rows WHERE id = -1"))
            assert list(none.keys()) == ["id", "writer"] and none.all() == []
            found = await conn.execute(text("SELECT id AS key, writer FROM rows ORDER BY id"))
            assert [r._asdict() for r in found] == [
                {"key": 1, "writer": 7},
                {"key": 10, "writer": 3},
                {"key": 11, "writer": 3},
                {"key": 12, "writer": 2},
            ]
            with pytest.raises(IntegrityError):
                await conn.execute(text("INSERT INTO rows (id, writer) VALUES (1, 0)"))
        assert await _count(engine) == 4
    finally:
        await engine.dispose()
