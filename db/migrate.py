"""Schema migrations: ``await migrate(url)`` when the API or a worker starts, or by hand with
``python migrate.py`` (the command-line entry at the top level). Several processes may start
at once: on PostgreSQL the migration runs under a transaction-scoped advisory lock, on SQLite
under an exclusive lock on a file beside the database, so exactly one of them changes the schema
and the others find it at head. Alembic runs on the same async engine as the apps, handed the
connection through ``config.attributes``; ``migrations/env.py`` picks it up.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from db.engine import create_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# pg_advisory_xact_lock key: any constant bigint shared by every printflow process ("pfmigrat").
_PG_LOCK_KEY = 0x70666D6967726174

log = logging.getLogger("printflow.migrate")


class MigrationError(RuntimeError):
    """The schema cannot be brought to the wanted revision; the message says why, in one line."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "migrations/versions has no revision"
    return head


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrades the schema to ``revision``; a no-op when it is there already."""
    await _run(url, lambda config: command.upgrade(config, revision))


async def downgrade(url: str, revision: str) -> None:
    await _run(url, lambda config: command.downgrade(config, revision))


async def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def _run(url: str, step: Callable[[Config], None]) -> None:
    config = alembic_config(url)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        before = MigrationContext.configure(connection).get_current_revision()
        try:
            step(config)
        except CommandError as err:
            raise MigrationError(_explain(err)) from err
        after = MigrationContext.configure(connection).get_current_revision()
        if after != before:
            log.info("database schema migrated from %s to %s", before or "base", after or "base")
        else:
            log.debug("database schema already at %s", after or "base")

    engine = create_engine(url)
    try:
        async with _sqlite_lock(url), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction commits: PostgreSQL DDL is transactional, so the
                # next process sees either no change or the whole migration.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                )
            await connection.run_sync(run)
    finally:
        await engine.dispose()


def _explain(err: CommandError) -> str:
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "Can't locate revision" in message:
        return (
            f"{message}: the database was migrated by a newer printflow than this one; "
            "deploy that version or downgrade the schema with it first"
        )
    return message


@asynccontextmanager
async def _sqlite_lock(url: str) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``<database>.migrate.lock`` for SQLite files; else nothing."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # flock blocks until the other process is done; in a thread, so the loop keeps going.
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
