"""The outbox of workflow starts: orders answered 201 whose workflow may not be running yet.

Revision ID: 5e1d2c7a9b30
Revises: b02eec127d82
Create Date: 2026-11-28 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1d2c7a9b30"
down_revision: str | Sequence[str] | None = "b02eec127d82"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_starts",
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("static_summary", sa.String(length=400), nullable=False),
        sa.Column("static_details", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index(op.f("ix_order_starts_due_at"), "order_starts", ["due_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_order_starts_due_at"), table_name="order_starts")
    op.drop_table("order_starts")
