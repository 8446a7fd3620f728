"""Credential rotation: the API key and webhook secret a merchant's rotation replaced, and until
when each keeps working.

Revision ID: 7d5e6f708192
Revises: 6c4d5e6f7a81
Create Date: 2026-11-30 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "7d5e6f708192"
down_revision: str | Sequence[str] | None = "6c4d5e6f7a81"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    columns: list[sa.Column[Any]] = [
        sa.Column("previous_api_key_hash", sa.String(length=64), nullable=True),
        sa.Column("previous_api_key_valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("previous_webhook_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_webhook_secret_valid_until", sa.DateTime(timezone=True), nullable=True),
    ]
    for column in columns:
        op.add_column("merchants", column)
    op.create_index(
        op.f("ix_merchants_previous_api_key_hash"), "merchants", ["previous_api_key_hash"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_merchants_previous_api_key_hash"), table_name="merchants")
    op.drop_column("merchants", "previous_webhook_secret_valid_until")
    op.drop_column("merchants", "previous_webhook_secret")
    op.drop_column("merchants", "previous_api_key_valid_until")
    op.drop_column("merchants", "previous_api_key_hash")
