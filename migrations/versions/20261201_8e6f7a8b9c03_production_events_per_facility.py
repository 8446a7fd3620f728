"""Facility event ids per facility: ``production_events`` is keyed on (facility_id, event_id),
so a second facility's report that happens to use another's event id is recorded, not refused.

Existing rows keep their ids: a key on event_id alone is unique per facility too. Downgrading
is refused while two facilities share an event id (the old key cannot hold both).

Revision ID: 8e6f7a8b9c03
Revises: 7d5e6f708192
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e6f7a8b9c03"
down_revision: str | Sequence[str] | None = "7d5e6f708192"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "production_events"
# PostgreSQL's name for the primary key the initial schema created without one.
PK = "production_events_pkey"


def _table(key: list[str]) -> sa.Table:
    """production_events as the initial schema made it, keyed on ``key``."""
    return sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint(*key),
        sa.Index("ix_production_events_order_id", "order_id"),
    )


def _rekey(key: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a primary key: batch mode copies the rows into a table built with
        # the new one. Nothing references production_events, so dropping the old orphans nothing.
        with op.batch_alter_table(TABLE, recreate="always", copy_from=_table(key)):
            pass
    else:
        op.drop_constraint(PK, TABLE, type_="primary")
        op.create_primary_key(PK, TABLE, key)


def upgrade() -> None:
    _rekey(["facility_id", "event_id"])


def downgrade() -> None:
    shared = (
        op.get_bind()
        .execute(
            sa.text(
                f"SELECT count(*) FROM (SELECT event_id FROM {TABLE} "  # noqa: S608 - constant
                "GROUP BY event_id HAVING count(*) > 1) AS shared"
            )
        )
        .scalar_one()
    )
    if shared:
        raise RuntimeError(
            f"cannot key {TABLE} on event_id alone: {shared} event ids were reported by more "
            "than one facility"
        )
    _rekey(["event_id"])
