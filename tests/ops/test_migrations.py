"""Alembic migrations on an empty SQLite file and an empty PostgreSQL schema.

Upgraded to head, the database must be exactly what db/models.py describes (autogenerate finds
no difference); downgraded to base, no table of ours is left. Processes that start together
migrate once: the others wait for the lock and find the schema at head.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

from db.engine import create_engine
from db.migrate import (
    _PG_LOCK_KEY,
    MigrationError,
    current_revision,
    downgrade,
    head_revision,
    migrate,
)
from db.models import Merchant
from devstack.stack import REPO_ROOT
from domain.support_ids import is_support_id
from tests.ops.conftest import run_python

OUR_TABLES = set(SQLModel.metadata.tables)


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_to_head_builds_exactly_the_models(empty_database_url: str) -> None:
    await migrate(empty_database_url)

    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
            assert await connection.run_sync(_tables) == OUR_TABLES | {"alembic_version"}
            if connection.dialect.name == "postgresql":
                # The test's own schema (search_path), not public, holds the version table.
                schemas = (
                    await connection.execute(
                        text(
                            "SELECT table_schema FROM information_schema.tables "
                            "WHERE table_name = 'alembic_version'"
                        )
                    )
                ).scalars()
                current = (await connection.execute(text("SELECT current_schema()"))).scalar()
                assert current is not None and current.startswith("t_")
                assert current in set(schemas)
    finally:
        await engine.dispose()
    assert await current_revision(empty_database_url) == head_revision()


async def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(
    empty_database_url: str,
) -> None:
    await migrate(empty_database_url)
    await downgrade(empty_database_url, "base")

    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == {"alembic_version"}
        assert await current_revision(empty_database_url) is None

        await migrate(empty_database_url)
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_migrating_again_keeps_the_data(empty_database_url: str) -> None:
    await migrate(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                Merchant.__table__.insert().values(  # type: ignore[attr-defined]
                    id="mer_1",
                    name="Mugs",
                    support_email="help@mugs.example.com",
                    approval="auto",
                    api_key_hash="0" * 64,
                    api_key_prefix="pf_abc",
                    webhook_secret="whsec_x",
                    created_at=datetime.now(UTC),
                )
            )
        await migrate(empty_database_url)
        async with engine.connect() as connection:
            names = (await connection.execute(text("SELECT name FROM merchants"))).scalars().all()
        assert names == ["Mugs"]
    finally:
        await engine.dispose()


async def test_a_database_from_a_newer_release_is_refused_in_one_line(
    empty_database_url: str,
) -> None:
    await migrate(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    finally:
        await engine.dispose()

    with pytest.raises(MigrationError, match="newer printflow") as caught:
        await migrate(empty_database_url)
    assert "\n" not in str(caught.value)
    assert await current_revision(empty_database_url) == "f00dfeed", "nothing was changed"


def test_processes_starting_together_migrate_once(empty_database_url: str, tmp_path: Path) -> None:
    """Three ``python migrate.py upgrade`` wait on the lock we hold, then one migrates."""
    url = make_url(empty_database_url)
    with _holding_the_migration_lock(empty_database_url):
        procs = [
            subprocess.Popen(
                [sys.executable, "migrate.py", "upgrade"],
                cwd=REPO_ROOT,
                env={**os.environ, "PRINTFLOW_DATABASE_URL": empty_database_url},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        time.sleep(3)
        assert [p.poll() for p in procs] == [None, None, None], "they wait for the lock"
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    migrated = [err for _, err in outputs if "database schema migrated from base" in err]
    assert len(migrated) == 1, outputs
    for out, _ in outputs:
        assert f"schema at {head_revision()}" in out
    assert url.password is None or url.password not in "".join(o + e for o, e in outputs)


@contextmanager
def _holding_the_migration_lock(empty_database_url: str) -> Iterator[None]:
    """Holds the lock ``db.migrate`` takes: the PostgreSQL advisory lock, or the SQLite flock."""
    url = make_url(empty_database_url)
    if url.get_backend_name() == "postgresql":
        with psycopg.connect(empty_database_url) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
            yield
        return
    assert url.database is not None
    fd = os.open(url.database + ".migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_the_command_line_downgrades_and_reports(empty_database_url: str) -> None:
    env = {"PRINTFLOW_DATABASE_URL": empty_database_url}
    up = run_python(["migrate.py", "upgrade"], env)
    assert up.returncode == 0, up.stderr
    assert f"schema at {head_revision()}" in up.stdout
    down = run_python(["migrate.py", "downgrade", "base"], env)
    assert down.returncode == 0, down.stderr
    assert "schema at base (no tables)" in down.stdout
    assert asyncio.run(current_revision(empty_database_url)) is None


async def _merchant(connection: AsyncConnection, now: datetime) -> None:
    """Merchant ``mer_1``, as a row of any revision."""
    await connection.execute(
        text(
            "INSERT INTO merchants (id, name, support_email, approval, api_key_hash, "
            "api_key_prefix, webhook_secret, created_at) VALUES ('mer_1', 'Mugs', "
            "'help@mugs.example.com', 'auto', :h, 'pf_abc', 'whsec_x', :now)"
        ),
        {"h": "0" * 64, "now": now},
    )


async def _printed_order(connection: AsyncConnection, now: datetime) -> None:
    """Merchant ``mer_1`` and its order ``ord_1``, printed at Berlin, as rows of any revision
    since support ids."""
    await _merchant(connection, now)
    await connection.execute(
        text(
            "INSERT INTO orders (id, merchant_id, order_reference_id, request_hash, "
            "workflow_input, status, facility_id, state, version, created_at, "
            "updated_at, support_id) VALUES ('ord_1', 'mer_1', 'R-1', 'x', '{}', "
            "'printed', 'berlin', '{}', 1, :now, :now, 'PF-ABCDEFGH')"
        ),
        {"now": now},
    )


async def test_support_ids_are_given_to_every_existing_order(empty_database_url: str) -> None:
    """Orders stored before Support IDs each get a fresh, unique one (back-filled in batches of
    1000, so 1205 orders take two), their timelines and start requests untouched; then the
    column is NOT NULL and unique. Down again, the column goes and the orders stay."""
    await migrate(empty_database_url, "0769adb4a74b")
    engine = create_engine(empty_database_url)
    now = datetime.now(UTC)
    count = 1205
    try:
        async with engine.begin() as connection:
            await _merchant(connection, now)
            await connection.execute(
                text(
                    "INSERT INTO orders (id, merchant_id, order_reference_id, request_hash, "
                    "workflow_input, status, facility_id, state, version, created_at, "
                    "updated_at) VALUES (:id, 'mer_1', :ref, 'x', '{}', 'scheduled', 'berlin', "
                    "'{}', 1, :now, :now)"
                ),
                [{"id": f"ord_{i:05d}", "ref": f"R-{i}", "now": now} for i in range(count)],
            )
            await connection.execute(
                text(
                    "INSERT INTO order_events (order_id, seq, at, type) "
                    "VALUES (:id, 1, :now, 'created')"
                ),
                [{"id": f"ord_{i:05d}", "now": now} for i in range(count)],
            )
            await connection.execute(
                text(
                    "INSERT INTO order_starts (order_id, due_at, attempts, static_summary, "
                    "static_details) VALUES ('ord_00007', :now, 0, 's', 'd')"
                ),
                {"now": now},
            )

        await migrate(empty_database_url)

        async with engine.connect() as connection:
            ids = (
                (await connection.execute(text("SELECT support_id FROM orders ORDER BY id")))
                .scalars()
                .all()
            )
            assert len(ids) == count
            assert all(is_support_id(i) for i in ids), [i for i in ids if not is_support_id(i)]
            assert len(set(ids)) == count
            events = (await connection.execute(text("SELECT count(*) FROM order_events"))).scalar()
            starts = (await connection.execute(text("SELECT order_id FROM order_starts"))).scalar()
            assert (events, starts) == (count, "ord_00007")
            if connection.dialect.name == "sqlite":
                # The rebuilt table: every timeline and start still points at its order.
                dangling = await connection.execute(text("PRAGMA foreign_key_check"))
                assert dangling.all() == []
            assert await connection.run_sync(_diff) == []
        async with engine.begin() as connection:
            with pytest.raises(IntegrityError):
                async with connection.begin_nested():
                    await connection.execute(
                        text("UPDATE orders SET support_id = :s WHERE id = 'ord_00001'"),
                        {"s": ids[0]},
                    )
            with pytest.raises(IntegrityError):
                async with connection.begin_nested():
                    await connection.execute(
                        text("UPDATE orders SET support_id = NULL WHERE id = 'ord_00001'")
                    )

        await downgrade(empty_database_url, "0769adb4a74b")
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("orders")}
            )
            assert "support_id" not in columns
            left = (await connection.execute(text("SELECT count(*) FROM orders"))).scalar()
            assert left == count
    finally:
        await engine.dispose()


async def test_facility_events_from_before_count_as_passed(empty_database_url: str) -> None:
    """Before ``passed_at``, a report was recorded in the transaction of its signal: every stored
    report reached its order, so none is signaled again when the facility repeats it."""
    await migrate(empty_database_url, "d3f4a5b6c758")
    engine = create_engine(empty_database_url)
    received = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            await _printed_order(connection, received)
            await connection.execute(
                text(
                    "INSERT INTO production_events (event_id, order_id, facility_id, type, "
                    "payload, received_at) VALUES ('evt-1', 'ord_1', 'berlin', 'printed', "
                    "'{}', :at)"
                ),
                {"at": received},
            )
        await migrate(empty_database_url)
        async with engine.connect() as connection:
            passed = await connection.execute(text("SELECT passed_at FROM production_events"))
            assert [_utc(row[0]) for row in passed.all()] == [received]
            assert await connection.run_sync(_diff) == []
        await downgrade(empty_database_url, "d3f4a5b6c758")
        await migrate(empty_database_url)
    finally:
        await engine.dispose()


def _utc(value: Any) -> datetime:
    """A timestamp as SQLite (ISO text) or PostgreSQL (an aware datetime) gives it back."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def test_facility_event_ids_become_unique_per_facility(empty_database_url: str) -> None:
    """Events stored under the old key (event_id alone) survive the new one, (facility_id,
    event_id); then a second facility may report an id another used, the same facility may
    not. Down again is refused while two facilities share an id, and works once they do not."""
    await migrate(empty_database_url, "7d5e6f708192")
    engine = create_engine(empty_database_url)
    now = datetime.now(UTC)
    insert = text(
        "INSERT INTO production_events (event_id, order_id, facility_id, type, payload, "
        "received_at) VALUES (:e, 'ord_1', :f, 'printed', '{}', :now)"
    )
    try:
        async with engine.begin() as connection:
            await _printed_order(connection, now)
            await connection.execute(insert, {"e": "evt-1", "f": "berlin", "now": now})

        await migrate(empty_database_url)

        async with engine.begin() as connection:
            await connection.execute(insert, {"e": "evt-1", "f": "newark", "now": now})
            with pytest.raises(IntegrityError):
                async with connection.begin_nested():
                    await connection.execute(insert, {"e": "evt-1", "f": "berlin", "now": now})
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT facility_id, event_id FROM production_events ORDER BY facility_id")
            )
            assert rows.all() == [("berlin", "evt-1"), ("newark", "evt-1")]
            assert await connection.run_sync(_diff) == []

        with pytest.raises(RuntimeError, match="1 event ids were reported by more than one"):
            await downgrade(empty_database_url, "7d5e6f708192")
        async with engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM production_events WHERE facility_id = 'newark'")
            )
        await downgrade(empty_database_url, "7d5e6f708192")
        async with engine.connect() as connection:
            left = await connection.execute(
                text("SELECT facility_id, event_id FROM production_events")
            )
            assert left.all() == [("berlin", "evt-1")]
    finally:
        await engine.dispose()
