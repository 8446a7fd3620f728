"""The async database engine for SQLite (default) and PostgreSQL.

Settings use plain SQLAlchemy URLs (``sqlite:///.data/printflow.db``,
``postgresql://user@host/db``); we pick the asyncio driver for each so nothing blocks an event
loop, in the API or in activities. What SQLite needs besides (its pragmas, one writer of a
process at a time, one trip to aiosqlite's thread per statement) is in ``db.sqlite``.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from db import sqlite


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
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        parsed, module=sqlite.Driver(), connect_args={"timeout": sqlite.BUSY_SECONDS}
    )
    sqlite.configure(engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@functools.cache
def insert_statement(dialect: str, table: Any, *, replace: bool = False) -> Insert:
    """INSERT into ``table`` of the rows given when it runs (``conn.execute(statement, rows)``),
    built once per database kind: rows whose key exists are skipped, or with ``replace``
    overwritten with these values."""
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(table.__table__)
    if not replace:
        return statement.on_conflict_do_nothing()
    columns = table.__table__.columns
    return statement.on_conflict_do_update(
        index_elements=[c.name for c in columns if c.primary_key],
        set_={c.name: statement.excluded[c.name] for c in columns if not c.primary_key},
    )


async def ping(engine: AsyncEngine, within: float) -> None:
    """``SELECT 1``, given ``within`` seconds; raises TimeoutError or the driver's error."""
    async with asyncio.timeout(within), engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
