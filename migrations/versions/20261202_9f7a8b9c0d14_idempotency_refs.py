"""Idempotency references: merchants, agents, support cases and customer contacts keep the
Idempotency-Key of the request that created them, hashed with the caller's credential, unique,
so a create that runs again (its stored answer was lost) finds the row instead of making a
second one. Existing rows have none.

Revision ID: 9f7a8b9c0d14
Revises: 8e6f7a8b9c03
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9f7a8b9c0d14"
down_revision: str | Sequence[str] | None = "8e6f7a8b9c03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("merchants", "agents", "support_cases", "customer_contacts")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("idempotency_ref", sa.String(length=64), nullable=True))
        op.create_index(
            op.f(f"ix_{table}_idempotency_ref"), table, ["idempotency_ref"], unique=True
        )


def downgrade() -> None:
    # Step by step what is still there: SQLite may keep part of a downgrade that a later step
    # of the same run refused (its DDL is not rolled back with the version), and run it again.
    inspector = sa.inspect(op.get_bind())
    for table in TABLES:
        index = op.f(f"ix_{table}_idempotency_ref")
        if any(i["name"] == index for i in inspector.get_indexes(table)):
            op.drop_index(index, table_name=table)
        if any(c["name"] == "idempotency_ref" for c in inspector.get_columns(table)):
            op.drop_column(table, "idempotency_ref")
