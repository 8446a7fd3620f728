"""Quotes: a merchant's quote and the prices it holds until it expires (``quotes``).

Revision ID: b1d2e3f4a536
Revises: a0c1d2e3f425
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b1d2e3f4a536"
down_revision: str | Sequence[str] | None = "a0c1d2e3f425"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quotes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_quotes_merchant_id"), "quotes", ["merchant_id"], unique=False)


def downgrade() -> None:
    # Only if it is still there: SQLite keeps DDL that a later step of the same run refused
    # (its DDL is not rolled back with the version), and the downgrade then runs again.
    # The table's indexes go with it.
    if sa.inspect(op.get_bind()).has_table("quotes"):
        op.drop_table("quotes")
