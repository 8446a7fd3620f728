"""When a facility's report was passed to its order: ``production_events.passed_at``.

A report is recorded first and signaled to the order's workflow after its insert commits, so the
database is not held while Temporal answers. A row without ``passed_at`` was recorded but not yet
passed (Temporal did not answer, or the API stopped in between): the facility's retry with the
same ``event_id`` passes it, or the API's sweep does, found by a partial index on the rows not
passed. Every row written before was passed in the insert's transaction, so it gets its
``received_at``.

Revision ID: e4f5a6b7c869
Revises: d3f4a5b6c758
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e4f5a6b7c869"
down_revision: str | Sequence[str] | None = "d3f4a5b6c758"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "production_events"
INDEX = "ix_production_events_unpassed"
UNPASSED = sa.text("passed_at IS NULL")


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("passed_at", sa.DateTime(timezone=True), nullable=True))
    events = sa.table(TABLE, sa.column("received_at"), sa.column("passed_at"))
    op.execute(events.update().values(passed_at=events.c.received_at))
    op.create_index(INDEX, TABLE, ["received_at"], sqlite_where=UNPASSED, postgresql_where=UNPASSED)


def downgrade() -> None:
    # Step by step what is still there: SQLite keeps DDL that a later step of the same run
    # refused, and the downgrade then runs again.
    inspector = sa.inspect(op.get_bind())
    if INDEX in {i["name"] for i in inspector.get_indexes(TABLE)}:
        op.drop_index(INDEX, table_name=TABLE)
    if "passed_at" in {c["name"] for c in inspector.get_columns(TABLE)}:
        op.drop_column(TABLE, "passed_at")
