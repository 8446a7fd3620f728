"""Support plans on merchants (plan, timezone, country, their CSM), the support team's agents,
and the log of merchants' failed requests.

Existing merchants get the free plan and UTC through the server defaults.

Revision ID: 3f1a2b4c5d6e
Revises: 0769adb4a74b
Create Date: 2026-11-28 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f1a2b4c5d6e"
down_revision: str | Sequence[str] | None = "0769adb4a74b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "merchants",
        sa.Column("plan", sa.String(length=20), server_default="free", nullable=False),
    )
    op.add_column(
        "merchants",
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
    )
    op.add_column("merchants", sa.Column("country", sa.String(length=2), nullable=True))
    op.add_column("merchants", sa.Column("csm_agent_id", sa.String(length=40), nullable=True))

    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_agents_token_hash"), "agents", ["token_hash"], unique=True)

    op.create_table(
        "request_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_request_log_request_id"), "request_log", ["request_id"])
    op.create_index(op.f("ix_request_log_merchant_id"), "request_log", ["merchant_id"])
    op.create_index(op.f("ix_request_log_created_at"), "request_log", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_request_log_created_at"), table_name="request_log")
    op.drop_index(op.f("ix_request_log_merchant_id"), table_name="request_log")
    op.drop_index(op.f("ix_request_log_request_id"), table_name="request_log")
    op.drop_table("request_log")
    op.drop_index(op.f("ix_agents_token_hash"), table_name="agents")
    op.drop_table("agents")
    op.drop_column("merchants", "csm_agent_id")
    op.drop_column("merchants", "country")
    op.drop_column("merchants", "timezone")
    op.drop_column("merchants", "plan")
