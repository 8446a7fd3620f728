"""The ship-by promise in the orders' read model: ``ships_by`` and ``shipped_at`` (the first
package), so ``GET /v1/support/standards`` counts promises kept without reading every state.
Rows written before have none; the next projection of their order fills them in.

Revision ID: c2e3f4a5b647
Revises: b1d2e3f4a536
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c2e3f4a5b647"
down_revision: str | Sequence[str] | None = "b1d2e3f4a536"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("ships_by", "shipped_at")
INDEX = "ix_orders_merchant_ships_by"


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("orders", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.create_index(INDEX, "orders", ["merchant_id", "ships_by"], unique=False)


def downgrade() -> None:
    # Step by step what is still there: SQLite may keep part of a downgrade that a later step
    # of the same run refused (its DDL is not rolled back with the version), and run it again.
    inspector = sa.inspect(op.get_bind())
    if any(i["name"] == INDEX for i in inspector.get_indexes("orders")):
        op.drop_index(INDEX, table_name="orders")
    present = {c["name"] for c in inspector.get_columns("orders")}
    for name in COLUMNS:
        if name in present:
            op.drop_column("orders", name)
