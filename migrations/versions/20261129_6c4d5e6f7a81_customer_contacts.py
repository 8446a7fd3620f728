"""Customer contacts: the contacts and their messages (read model of each contact's workflow),
the customers' /c/{token} links (hashed), the merchants' reply deadlines, and the outbox of
contact workflow starts.

Revision ID: 6c4d5e6f7a81
Revises: 5b3c4d6e7f80
Create Date: 2026-11-29 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6c4d5e6f7a81"
down_revision: str | Sequence[str] | None = "5b3c4d6e7f80"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_contacts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("support_id", sa.String(length=11), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sla_state", sa.String(length=16), nullable=False),
        sa.Column("reply_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("workflow_input", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_customer_contacts_merchant_created",
        "customer_contacts",
        ["merchant_id", "created_at", "id"],
    )
    op.create_index(
        "ix_customer_contacts_merchant_status_created",
        "customer_contacts",
        ["merchant_id", "status", "created_at", "id"],
    )
    op.create_index(
        "ix_customer_contacts_support_id", "customer_contacts", ["merchant_id", "support_id"]
    )
    op.create_table(
        "customer_contact_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("author_kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["customer_contacts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_customer_contact_messages_contact",
        "customer_contact_messages",
        ["contact_id", "created_at"],
    )
    op.create_table(
        "customer_contact_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["customer_contacts.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(
        op.f("ix_customer_contact_links_contact_id"), "customer_contact_links", ["contact_id"]
    )
    op.create_table(
        "customer_contact_deadlines",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["customer_contacts.id"]),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_customer_contact_deadlines_merchant",
        "customer_contact_deadlines",
        ["merchant_id", "started_at"],
    )
    op.create_table(
        "customer_contact_starts",
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("static_summary", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["customer_contacts.id"]),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_index(
        op.f("ix_customer_contact_starts_due_at"), "customer_contact_starts", ["due_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_customer_contact_starts_due_at"), table_name="customer_contact_starts")
    op.drop_table("customer_contact_starts")
    op.drop_index("ix_customer_contact_deadlines_merchant", table_name="customer_contact_deadlines")
    op.drop_table("customer_contact_deadlines")
    op.drop_index(op.f("ix_customer_contact_links_contact_id"), table_name="customer_contact_links")
    op.drop_table("customer_contact_links")
    op.drop_index("ix_customer_contact_messages_contact", table_name="customer_contact_messages")
    op.drop_table("customer_contact_messages")
    op.drop_index("ix_customer_contacts_support_id", table_name="customer_contacts")
    op.drop_index("ix_customer_contacts_merchant_status_created", table_name="customer_contacts")
    op.drop_index("ix_customer_contacts_merchant_created", table_name="customer_contacts")
    op.drop_table("customer_contacts")
