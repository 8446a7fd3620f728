"""The support-plans migration on a database that already has merchants (SQLite, PostgreSQL):
they keep everything and get the free plan in UTC; downgrading takes only what it added."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text

from db.engine import create_engine
from db.migrate import current_revision, downgrade, migrate

BEFORE = "0769adb4a74b"
SUPPORT_PLANS = "3f1a2b4c5d6e"


async def test_existing_merchants_get_the_free_plan_in_utc(empty_database_url: str) -> None:
    await migrate(empty_database_url, BEFORE)
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            for n in (1, 2):
                await connection.execute(
                    text(
                        "INSERT INTO merchants (id, name, support_email, approval, api_key_hash,"
                        " api_key_prefix, webhook_secret, created_at) VALUES (:id, :name,"
                        " 'help@shop.example.com', 'auto', :hash, 'pf_abc', 'whsec_x', :at)"
                    ),
                    {
                        "id": f"mer_{n}",
                        "name": f"Shop {n}",
                        "hash": str(n) * 64,
                        "at": datetime.now(UTC),
                    },
                )

        await migrate(empty_database_url, SUPPORT_PLANS)
        assert await current_revision(empty_database_url) == SUPPORT_PLANS
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT id, name, plan, timezone, country, csm_agent_id FROM merchants"
                        " ORDER BY id"
                    )
                )
            ).all()
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert [tuple(r) for r in rows] == [
            ("mer_1", "Shop 1", "free", "UTC", None, None),
            ("mer_2", "Shop 2", "free", "UTC", None, None),
        ]
        assert {"agents", "request_log"} <= tables

        # New rows written without the new columns get the same defaults (an older API
        # replica still running during a rolling deploy).
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO merchants (id, name, support_email, approval, api_key_hash,"
                    " api_key_prefix, webhook_secret, created_at) VALUES ('mer_3', 'Shop 3',"
                    " 'help@shop.example.com', 'auto', :hash, 'pf_abc', 'whsec_x', :at)"
                ),
                {"hash": "3" * 64, "at": datetime.now(UTC)},
            )
            plan = (
                await connection.execute(
                    text("SELECT plan, timezone FROM merchants WHERE id = 'mer_3'")
                )
            ).one()
        assert tuple(plan) == ("free", "UTC")

        await downgrade(empty_database_url, BEFORE)
        async with engine.connect() as connection:
            names = (await connection.execute(text("SELECT name FROM merchants ORDER BY id"))).all()
            columns = await connection.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("merchants")}
            )
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert [n for (n,) in names] == ["Shop 1", "Shop 2", "Shop 3"]
        assert not {"plan", "timezone", "country", "csm_agent_id"} & columns
        assert not {"agents", "request_log"} & tables
    finally:
        await engine.dispose()
