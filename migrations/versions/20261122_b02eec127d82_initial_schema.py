"""Initial schema: merchants, the orders read model and everything hanging off an order.

Revision ID: b02eec127d82
Revises:
Create Date: 2026-11-22 00:10:25.307879
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b02eec127d82"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("support_email", sa.String(length=320), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("approval", sa.String(length=10), nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=False),
        sa.Column("api_key_prefix", sa.String(length=16), nullable=False),
        sa.Column("webhook_secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_merchants_api_key_hash"), "merchants", ["api_key_hash"], unique=True)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("order_reference_id", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("workflow_input", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("cutoff_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id", "order_reference_id"),
    )
    op.create_index(
        "ix_orders_merchant_created", "orders", ["merchant_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_orders_merchant_status_created",
        "orders",
        ["merchant_id", "status", "created_at", "id"],
        unique=False,
    )

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_webhook_events_merchant_id"), "webhook_events", ["merchant_id"], unique=False
    )
    op.create_index(
        op.f("ix_webhook_events_order_id"), "webhook_events", ["order_id"], unique=False
    )

    op.create_table(
        "claims",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("original_order_id", sa.String(length=40), nullable=False),
        sa.Column("new_order_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("photo_urls", sa.JSON(), nullable=False),
        sa.Column("item_reference_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
        ),
        sa.ForeignKeyConstraint(
            ["new_order_id"],
            ["orders.id"],
        ),
        sa.ForeignKeyConstraint(
            ["original_order_id"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_claims_merchant_id"), "claims", ["merchant_id"], unique=False)
    op.create_index(op.f("ix_claims_new_order_id"), "claims", ["new_order_id"], unique=False)
    op.create_index(
        op.f("ix_claims_original_order_id"), "claims", ["original_order_id"], unique=False
    )

    op.create_table(
        "order_events",
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("order_id", "seq"),
    )
    op.create_table(
        "personalization_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "seq"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        op.f("ix_personalization_links_order_id"),
        "personalization_links",
        ["order_id"],
        unique=False,
    )

    op.create_table(
        "production_events",
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("facility_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index(
        op.f("ix_production_events_order_id"), "production_events", ["order_id"], unique=False
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["webhook_events.id"],
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries", ["event_id"], unique=False
    )
    op.create_index(
        op.f("ix_webhook_deliveries_merchant_id"),
        "webhook_deliveries",
        ["merchant_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_merchant_id"), table_name="webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_event_id"), table_name="webhook_deliveries")

    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_production_events_order_id"), table_name="production_events")

    op.drop_table("production_events")
    op.drop_index(op.f("ix_personalization_links_order_id"), table_name="personalization_links")

    op.drop_table("personalization_links")
    op.drop_table("order_events")
    op.drop_index(op.f("ix_claims_original_order_id"), table_name="claims")
    op.drop_index(op.f("ix_claims_new_order_id"), table_name="claims")
    op.drop_index(op.f("ix_claims_merchant_id"), table_name="claims")

    op.drop_table("claims")
    op.drop_index(op.f("ix_webhook_events_order_id"), table_name="webhook_events")
    op.drop_index(op.f("ix_webhook_events_merchant_id"), table_name="webhook_events")

    op.drop_table("webhook_events")
    op.drop_index("ix_orders_merchant_status_created", table_name="orders")
    op.drop_index("ix_orders_merchant_created", table_name="orders")

    op.drop_table("orders")
    op.drop_index(op.f("ix_merchants_api_key_hash"), table_name="merchants")

    op.drop_table("merchants")
