"""The async database engine for SQLite (default) and PostgreSQL.

Settings use plain SQLAlchemy URLs (``sqlite:///.data/printflow.db``,
``postgresql://user@host/db``); we pick the asyncio driver for each so nothing blocks an event
loop, in the API or in activities.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import db.models  # noqa: F401  (registers the tables on SQLModel.metadata)


def utcnow() -> datetime:
    """Now, in UTC: the one clock the API and activities stamp rows and compare deadlines with."""
    return datetime.now(UTC)


_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}


def async_url(url: str) -> str:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(
            f"unsupported database URL {parsed.render_as_string()}: use sqlite or postgresql"
        )
    return parsed.set(drivername=_ASYNC_DRIVERS[backend]).render_as_string(hide_password=False)


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(async_url(url))
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_async_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        # WAL lets the API read while the worker writes; foreign keys are off by default.
        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")
            cur.close()

        _one_writer_at_a_time(engine)
    return engine


_SQLITE_BUSY_SECONDS = 30
# The statements that start a write transaction on SQLite (the driver then issues BEGIN).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _one_writer_at_a_time(engine: AsyncEngine) -> None:
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
    """Whose turn it is to write (``_one_writer_at_a_time``); one asyncio lock per event loop
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
            await_only(_acquire(self._lock, _SQLITE_BUSY_SECONDS))
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


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def insert_new(engine: AsyncEngine, table: Any, rows: list[dict[str, Any]]) -> Insert:
    """INSERT of ``rows`` that skips those whose key exists: idempotent writes for retries."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    return insert(table).values(rows).on_conflict_do_nothing()


def insert_or_replace(engine: AsyncEngine, table: Any, rows: list[dict[str, Any]]) -> Insert:
    """INSERT of ``rows`` that overwrites the rows whose key exists with these values."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(rows)
    columns = table.__table__.columns
    keys = [c.name for c in columns if c.primary_key]
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: statement.excluded[c.name] for c in columns if not c.primary_key},
    )


async def ping(engine: AsyncEngine, within: float) -> None:
    """``SELECT 1``, given ``within`` seconds; raises TimeoutError or the driver's error."""
    async with asyncio.timeout(within), engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
