"""Support IDs: every order gets one (``PF-`` and 8 characters), existing orders included.

Adds ``orders.support_id``, gives every existing order a fresh random one, in batches, then
makes the column NOT NULL with a unique index. Self-contained: the alphabet is copied here
(from ``domain.contact_policy``) so this revision never changes with today's code.

Revision ID: 5b3c4d6e7f80
Revises: 0769adb4a74b
Create Date: 2026-11-28 18:00:00
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "5b3c4d6e7f80"
down_revision: str | None = "4a2b3c5d6e7f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREFIX = "PF-"
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32 without 0, 1, I, L, O, U
LENGTH = 8
BATCH = 1000

_orders = sa.table("orders", sa.column("id", sa.String), sa.column("support_id", sa.String))


def _fresh(taken: set[str]) -> str:
    while True:
        candidate = PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def backfill(connection: sa.Connection, batch: int = BATCH) -> int:
    """Gives every order without a Support ID a fresh one, ``batch`` rows at a time; returns
    how many it gave. Unique without the index: every ID in use or given here is remembered
    (11 bytes each, so a million orders cost some 100 MB at most)."""
    taken = set(
        connection.execute(
            sa.select(_orders.c.support_id).where(_orders.c.support_id.is_not(None))
        ).scalars()
    )
    given = 0
    while True:
        ids = (
            connection.execute(
                sa.select(_orders.c.id)
                .where(_orders.c.support_id.is_(None))
                .order_by(_orders.c.id)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not ids:
            return given
        connection.execute(
            _orders.update()
            .where(_orders.c.id == sa.bindparam("order_id"))
            .values(support_id=sa.bindparam("new_support_id")),
            [{"order_id": i, "new_support_id": _fresh(taken)} for i in ids],
        )
        given += len(ids)


def _sqlite_rebuild_not_null(connection: sa.Connection) -> None:
    """Makes ``orders.support_id`` NOT NULL on SQLite, which cannot alter a column in place.

    Alembic's batch mode builds a copy and renames it over the original; with foreign keys on,
    dropping the original orphans every row that points at an order (timelines, starts,
    links, claims), and a rename never makes up for it, so the commit fails. Here the rebuilt
    table takes the name ``orders`` before the rows go back in: each row inserted into it
    settles the references the drop left dangling (checked at commit, deferred).
    """
    connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    table_sql = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'"
    ).scalar_one()
    index_sql = (
        connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders' "
            "AND sql IS NOT NULL"
        )
        .scalars()
        .all()
    )
    column = "support_id VARCHAR(11)"
    assert table_sql.count(column) == 1, table_sql
    connection.exec_driver_sql("CREATE TABLE _orders_before_support_ids AS SELECT * FROM orders")
    connection.exec_driver_sql("DROP TABLE orders")
    connection.exec_driver_sql(table_sql.replace(column, f"{column} NOT NULL"))
    connection.exec_driver_sql("INSERT INTO orders SELECT * FROM _orders_before_support_ids")
    connection.exec_driver_sql("DROP TABLE _orders_before_support_ids")
    for statement in index_sql:
        connection.exec_driver_sql(statement)


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError(
            "revision 5b3c4d6e7f80 draws a random Support ID for every existing order; "
            "run it online (python migrate.py upgrade), not as --sql"
        )
    connection = op.get_bind()
    op.add_column("orders", sa.Column("support_id", sa.String(length=11), nullable=True))
    backfill(connection)
    if connection.dialect.name == "sqlite":
        _sqlite_rebuild_not_null(connection)
    else:
        op.alter_column("orders", "support_id", existing_type=sa.String(length=11), nullable=False)
    op.create_index("ix_orders_support_id", "orders", ["support_id"], unique=True)


def downgrade() -> None:
    connection = op.get_bind()
    op.drop_index("ix_orders_support_id", table_name="orders")
    if connection.dialect.name == "sqlite":
        # In place (SQLite 3.35 and later): no rebuild, so nothing pointing at orders is touched.
        connection.exec_driver_sql("ALTER TABLE orders DROP COLUMN support_id")
    else:
        op.drop_column("orders", "support_id")
