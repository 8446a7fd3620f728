"""Schema migrations: ``await migrate(url)`` when the API or a worker starts, or by hand::

    python -m db.migrate upgrade [REVISION]     # default: head
    python -m db.migrate downgrade REVISION     # "base" removes every table
    python -m db.migrate current

The database comes from ``PRINTFLOW_DATABASE_URL`` (or ``--url``). Several processes may start
at once: on PostgreSQL the migration runs under a transaction-scoped advisory lock, on SQLite
under an exclusive lock on a file beside the database, so exactly one of them changes the schema
and the others find it at head. Alembic runs on the same async engine as the apps, handed the
connection through ``config.attributes``; ``migrations/env.py`` picks it up.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import sys
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
from startup import ConfigError, check_database, configure_process

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m db.migrate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", help="database URL (default: PRINTFLOW_DATABASE_URL)")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upgrade", help="upgrade the schema (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = sub.add_parser("downgrade", help="downgrade the schema ('base': drop every table)")
    down.add_argument("revision")
    sub.add_parser("current", help="print the schema revision of the database")
    args = parser.parse_args(argv)

    async def run(url: str) -> str | None:
        await check_database(url)
        if args.action == "upgrade":
            await migrate(url, args.revision)
        elif args.action == "downgrade":
            await downgrade(url, args.revision)
        return await current_revision(url)

    try:
        settings = configure_process()
        url = args.url or settings.database_url
        revision = asyncio.run(run(url))
    except ConfigError as err:
        return err.exit()
    except MigrationError as err:
        print(f"printflow: migration failed: {err}", file=sys.stderr)
        return 1
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"{shown}: schema at {revision or 'base (no tables)'}; code head {head_revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
