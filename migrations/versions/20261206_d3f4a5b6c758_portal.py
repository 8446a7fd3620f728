"""The merchant portal: its users, their sessions and e-mailed links (invite, reset), and what
its order search matches on the orders' read model (``country``, ``customer``). Rows written
before get both from their stored state here.

Revision ID: d3f4a5b6c758
Revises: c2e3f4a5b647
Create Date: 2026-12-06 10:00:00
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from domain.portal import customer_search_text

revision: str = "d3f4a5b6c758"
down_revision: str | Sequence[str] | None = "c2e3f4a5b647"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("portal_tokens", "portal_sessions", "merchant_users")
COLUMNS = ("country", "customer")


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "merchant_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        _when("created_at"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_merchant_users_merchant_id", "merchant_users", ["merchant_id"])
    op.create_index("ix_merchant_users_email", "merchant_users", ["email"], unique=True)
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_sessions_user_id", "portal_sessions", ["user_id"])
    op.create_table(
        "portal_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        _when("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_tokens_user_id", "portal_tokens", ["user_id"])
    op.add_column("orders", sa.Column("country", sa.String(length=2), nullable=True))
    op.add_column("orders", sa.Column("customer", sa.String(length=700), nullable=True))
    _backfill()


def _backfill() -> None:
    bind = op.get_bind()
    orders = sa.table(
        "orders",
        sa.column("id", sa.String),
        sa.column("state", sa.JSON),
        sa.column("country", sa.String),
        sa.column("customer", sa.String),
    )
    rows = bind.execute(sa.select(orders.c.id, orders.c.state)).all()
    for order_id, state in rows:
        if isinstance(state, str):
            state = json.loads(state)
        address = (state or {}).get("shipping_address") or {}
        bind.execute(
            orders.update()
            .where(orders.c.id == order_id)
            .values(
                country=(address.get("country") or None),
                customer=customer_search_text(
                    address.get("first_name") or "",
                    address.get("last_name") or "",
                    address.get("email"),
                ),
            )
        )


def downgrade() -> None:
    # Step by step what is still there: SQLite keeps DDL that a later step of the same run
    # refused (its DDL is not rolled back with the version), and the downgrade then runs again.
    inspector = sa.inspect(op.get_bind())
    present = {c["name"] for c in inspector.get_columns("orders")}
    for name in COLUMNS:
        if name in present:
            op.drop_column("orders", name)
    for table in TABLES:
        if inspector.has_table(table):
            op.drop_table(table)
