"""Configuration alerts: a facility token or mail sender that an outside system refuses, as
the worker saw it, so the API's ``/readyz`` can say so (``configuration_alerts``).

Revision ID: a0c1d2e3f425
Revises: 9f7a8b9c0d14
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0c1d2e3f425"
down_revision: str | Sequence[str] | None = "9f7a8b9c0d14"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "configuration_alerts",
        sa.Column("what", sa.String(length=100), nullable=False),
        sa.Column("setting", sa.String(length=200), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("what"),
    )


def downgrade() -> None:
    # Only if it is still there: SQLite keeps DDL that a later step of the same run refused
    # (its DDL is not rolled back with the version), and the downgrade then runs again.
    # The table's indexes go with it.
    if sa.inspect(op.get_bind()).has_table("configuration_alerts"):
        op.drop_table("configuration_alerts")
