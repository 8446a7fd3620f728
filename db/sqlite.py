"""What printflow does on SQLite that PostgreSQL needs none of (``db.engine`` applies it):

- the file's pragmas: WAL, so readers never wait for the writer; foreign keys on;
- one writer of a process at a time, waiting on the event loop (``one_writer_at_a_time``);
- one trip to the connection's thread per statement, none for a commit or rollback after only
  reads (``Driver``).

aiosqlite runs each connection's calls on a thread of its own; every call is a trip there and
back through the event loop's wake-up pipe. SQLAlchemy's adapter makes four per statement (open
a cursor, execute, fetch, close); ``Driver`` makes one, running the four in the thread together.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

BUSY_SECONDS = 30
# The statements that start a write transaction on SQLite (the driver then issues BEGIN).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def configure(engine: AsyncEngine) -> None:
    """The pragmas on every new connection, and the writers' turns."""

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
        cur.close()

    one_writer_at_a_time(engine)


# ------------------------------------------------------------------ one trip per statement


class _Outcome:
    """What a statement left on its sqlite3 cursor, read in the connection's thread before the
    cursor was closed: all SQLAlchemy asks of a cursor once its rows are fetched."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.arraysize = 1
        self.description: Any = None
        self.lastrowid: int | None = None
        self.rowcount = -1

    def close(self) -> None:
        """Nothing left to close: the sqlite3 cursor was closed in the thread."""


def _run(
    connection: aiosqlite.Connection, outcome: _Outcome, operation: str, parameters: Any, many: bool
) -> list[Any]:
    """In the connection's thread: the whole statement, from opening a cursor to closing it."""
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        outcome.description = cursor.description
        outcome.rowcount = cursor.rowcount
        outcome.lastrowid = cursor.lastrowid
        return cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return _Outcome()

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor  # no sqlite3 cursor is open between statements

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._statement(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._statement(operation, seq_of_parameters, many=True)

    async def _statement(self, operation: str, parameters: Any, *, many: bool) -> None:
        outcome = _Outcome()
        async with self._adapt_connection._execute_mutex:
            # aiosqlite's queue to its thread, as SQLAlchemy's own adapter uses it to set the
            # isolation level: one trip for the statement and its rows.
            rows = await self._connection._execute(
                _run, self._connection, outcome, operation, parameters, many
            )
        self._cursor = outcome  # type: ignore[assignment]  # what SQLAlchemy reads of a cursor
        self._rows = collections.deque(rows)


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _Cursor

    # sqlite3 begins a transaction at the first write: after only reads (a GET) there is none,
    # and its commit or rollback would be a trip to the thread to do nothing.
    def commit(self) -> None:
        if self._in_transaction():
            super().commit()

    def rollback(self) -> None:
        if self._in_transaction():
            super().rollback()

    def _in_transaction(self) -> bool:
        connection = self._connection._connection
        return connection is not None and connection.in_transaction


class Driver(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite adapter with one trip to the thread per statement (``_Cursor``);
    given to the engine as its DBAPI module (``create_async_engine(module=Driver())``)."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        connection = super().connect(*arg, **kw)
        return _Connection(self, connection._connection)


# ------------------------------------------------------------------ one writer at a time


def one_writer_at_a_time(engine: AsyncEngine) -> None:
    """Lets one connection of this process write to the SQLite file at a time.

    SQLite has one write lock for the file, and a connection that finds it taken sleeps and
    tries again, sleeping longer each time (up to 100 ms). With many connections of one process
    writing at once (a cutoff wave's projections, a burst of creates) they mostly sleep while
    the lock is free. So a write transaction of this process first waits its turn on an asyncio
    lock, taken at its first INSERT, UPDATE or DELETE (where SQLite would take its write lock)
    and given back when it commits or rolls back: the next writer starts as soon as the last
    one ends, and SQLite's own waiting is left for the other processes on the file (the API
    and the worker). A turn not given within the busy timeout fails as SQLite's own would
    ("database is locked"). PostgreSQL locks rows, and needs none of this.
    """
    dialect = engine.sync_engine.dialect
    turns = _WriterTurns()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _take_turn(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement[:16].lstrip().upper().startswith(_WRITES):
            turns.take(conn.connection.dbapi_connection)

    # Wrapped, not events: the "commit" and "rollback" events come before SQLite has ended the
    # transaction, and the next writer would meet its lock still held.
    for name in ("do_commit", "do_rollback", "do_close", "do_terminate"):
        setattr(dialect, name, turns.giving_back_after(getattr(dialect, name)))


async def _acquire(lock: asyncio.Lock, within: float) -> None:
    # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that comes as the lock is given
    # (the task then writes, and a shutdown that cancelled it waits on). asyncio.timeout does not.
    async with asyncio.timeout(within):
        await lock.acquire()


class _WriterTurns:
    """Whose turn it is to write (``one_writer_at_a_time``); one asyncio lock per event loop
    (tests run several loops over an engine's life)."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holder: Any = None

    def take(self, dbapi_connection: Any) -> None:
        if self._holder is dbapi_connection:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._lock, self._loop, self._holder = asyncio.Lock(), loop, None
        assert self._lock is not None
        try:
            await_only(_acquire(self._lock, BUSY_SECONDS))
        except TimeoutError:
            locked = sqlite3.OperationalError("database is locked")
            raise OperationalError("waiting to write", None, locked) from None
        self._holder = dbapi_connection

    def giving_back_after(self, step: Callable[[Any], None]) -> Callable[[Any], None]:
        def then_give_back(connection: Any) -> None:
            try:
                step(connection)
            finally:
                # The pool's proxy or the driver's connection, as SQLAlchemy passes either.
                dbapi_connection = getattr(connection, "dbapi_connection", connection)
                if self._holder is dbapi_connection and self._lock is not None:
                    self._holder = None
                    self._lock.release()

        return then_give_back
