"""Support cases: the cases and their messages (read model of each case's workflow), and the
outbox of their workflow starts.

Revision ID: 4a2b3c5d6e7f
Revises: 3f1a2b4c5d6e
Create Date: 2026-11-28 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4a2b3c5d6e7f"
down_revision: str | Sequence[str] | None = "3f1a2b4c5d6e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "support_cases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("assignee_id", sa.String(length=40), nullable=True),
        sa.Column("queue", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("request_ids", sa.JSON(), nullable=False),
        sa.Column("phone", sa.String(length=25), nullable=True),
        sa.Column("complaint", sa.JSON(), nullable=True),
        sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_response_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_state", sa.String(length=16), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("workflow_input", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    op.create_index(
        "ix_support_cases_merchant_created",
        "support_cases",
        ["merchant_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_support_cases_merchant_status_created",
        "support_cases",
        ["merchant_id", "status", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_support_cases_queue_due", "support_cases", ["queue", "sla_due_at", "number"]
    )
    op.create_index("ix_support_cases_due", "support_cases", ["sla_due_at", "number"])
    op.create_table(
        "support_case_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=40), nullable=False),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.String(length=40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["support_cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_support_case_messages_case_created",
        "support_case_messages",
        ["case_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "support_case_starts",
        sa.Column("case_id", sa.String(length=40), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("static_summary", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["support_cases.id"]),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_index(
        op.f("ix_support_case_starts_due_at"), "support_case_starts", ["due_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_support_case_starts_due_at"), table_name="support_case_starts")
    op.drop_table("support_case_starts")
    op.drop_index("ix_support_case_messages_case_created", table_name="support_case_messages")
    op.drop_table("support_case_messages")
    op.drop_index("ix_support_cases_due", table_name="support_cases")
    op.drop_index("ix_support_cases_queue_due", table_name="support_cases")
    op.drop_index("ix_support_cases_merchant_status_created", table_name="support_cases")
    op.drop_index("ix_support_cases_merchant_created", table_name="support_cases")
    op.drop_table("support_cases")
