"""Tables: merchants, the orders read model, and each order's timeline; merchants' quotes; the
support team's agents and the log of merchants' failed requests.

The order workflow is the source of truth; ``orders`` and ``order_events`` are its projection,
written by one local activity on every change, and read by the API's lists and detail pages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    JSON,
    Column,
    DateTime,
    Dialect,
    Index,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class Merchant(SQLModel, table=True):
    __tablename__ = "merchants"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    support_email: str = Field(max_length=320)
    webhook_url: str | None = Field(default=None, max_length=2000)
    approval: str = Field(default="auto", max_length=10)
    # sha256 of the API key: keys are 256-bit random, so a fast hash is enough and lets us
    # look the merchant up by it.
    api_key_hash: str = Field(index=True, unique=True, max_length=64)
    api_key_prefix: str = Field(max_length=16)
    webhook_secret: str = Field(max_length=100)
    created_at: datetime = _utc(nullable=False)
    # Support (domain.support): the plan's current name (legacy names are mapped on the way in),
    # the merchant's IANA time zone and ISO 3166-1 alpha-2 country (their business days), and
    # their dedicated customer success manager: an ``agents.id`` of role "csm", checked by the
    # API when assigned (no foreign key: SQLite could only add one by rebuilding the table).
    plan: str = Field(default="free", max_length=20, sa_column_kwargs={"server_default": "free"})
    timezone: str = Field(default="UTC", max_length=64, sa_column_kwargs={"server_default": "UTC"})
    country: str | None = Field(default=None, max_length=2)
    csm_agent_id: str | None = Field(default=None, max_length=40)
    # Rotation (POST /v1/admin/merchants/{id}/rotate-key, .../rotate-webhook-secret): the key
    # and secret they replaced keep working until these moments (KEY_ROTATION_OVERLAP).
    previous_api_key_hash: str | None = Field(default=None, index=True, max_length=64)
    previous_api_key_valid_until: datetime | None = _utc(nullable=True)
    previous_webhook_secret: str | None = Field(default=None, max_length=100)
    previous_webhook_secret_valid_until: datetime | None = _utc(nullable=True)
    # The Idempotency-Key of the request that created it, hashed with its caller's credential
    # (``api.idempotency.reference``): a retry that runs again finds this row instead of making
    # a second one.
    idempotency_ref: str | None = Field(default=None, max_length=64, unique=True, index=True)


class Agent(SQLModel, table=True):
    """A member of the platform's support team; they call the API with ``X-Agent-Token``."""

    __tablename__ = "agents"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    role: str = Field(max_length=10)  # "agent" | "csm"
    # sha256 of the token (256 random bits, shown once): looked up by its hash, like API keys.
    token_hash: str = Field(index=True, unique=True, max_length=64)
    token_prefix: str = Field(max_length=16)
    created_at: datetime = _utc(nullable=False)
    active: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    # The Idempotency-Key of the request that created it, hashed with its caller's credential
    # (``api.idempotency.reference``): a retry that runs again finds this row instead of making
    # a second one.
    idempotency_ref: str | None = Field(default=None, max_length=64, unique=True, index=True)


class MerchantUser(SQLModel, table=True):
    """A person of a merchant's team, signing in to the portal (``/portal``, docs/portal.md)
    with e-mail and password. The e-mail is unique across merchants and stored lowercased; the
    password hash (argon2, ``pwdlib``) is None until the invite link was used."""

    __tablename__ = "merchant_users"

    id: str = Field(primary_key=True, max_length=40)
    merchant_id: str = Field(foreign_key="merchants.id", index=True, max_length=40)
    email: str = Field(max_length=320, unique=True, index=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=20)  # domain.portal.Role
    password_hash: str | None = Field(default=None, max_length=255)
    created_at: datetime = _utc(nullable=False)


class PortalSession(SQLModel, table=True):
    """A signed-in browser: the cookie is signed and names the session; the row is what makes
    it valid, so signing out, a new password or a removal ends it at once (a changed role
    applies at the next request: every page reads the role again)."""

    __tablename__ = "portal_sessions"

    id: str = Field(primary_key=True, max_length=64)  # sha256 of the session's random id
    user_id: str = Field(index=True, max_length=40)
    created_at: datetime = _utc(nullable=False)
    expires_at: datetime = _utc(nullable=False)


class PortalToken(SQLModel, table=True):
    """A link sent by e-mail: an invite (set your password) or a password reset. Single use,
    expiring; kept as the sha256 of the token the link carries."""

    __tablename__ = "portal_tokens"

    id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(index=True, max_length=40)
    purpose: str = Field(max_length=10)  # "invite" | "reset"
    created_at: datetime = _utc(nullable=False)
    expires_at: datetime = _utc(nullable=False)
    used_at: datetime | None = _utc(nullable=True)


class RequestLog(SQLModel, table=True):
    """A merchant's request that was answered 400 or above: what support sees of it.

    Only the request id (``X-Request-Id``), method, route template, status and the error code:
    never a body, a header, a query string or a raw path. Kept 30 days.
    """

    __tablename__ = "request_log"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(index=True, max_length=100)
    merchant_id: str = Field(foreign_key="merchants.id", index=True, max_length=40)
    method: str = Field(max_length=10)
    route: str = Field(max_length=200)
    status: int
    error_code: str | None = Field(default=None, max_length=64)
    created_at: datetime = _utc(nullable=False, index=True)


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("merchant_id", "order_reference_id"),
        # The merchant's order list: newest first, optionally by status.
        Index("ix_orders_merchant_created", "merchant_id", "created_at", "id"),
        Index("ix_orders_merchant_status_created", "merchant_id", "status", "created_at", "id"),
        # The support standards: promises that came due in a window.
        Index("ix_orders_merchant_ships_by", "merchant_id", "ships_by"),
    )

    id: str = Field(primary_key=True, max_length=40)
    merchant_id: str = Field(foreign_key="merchants.id", max_length=40)
    order_reference_id: str = Field(max_length=64)
    # What the customer and support quote (domain.contact_policy): ``PF-`` and 8 characters, random,
    # unique across all merchants; set once at create (a collision draws again) and never changed.
    support_id: str = Field(max_length=11, unique=True, index=True)
    # sha256 of the canonical create request: a retry with the same body is the same order.
    request_hash: str = Field(max_length=64)
    # The workflow's input, so a retried create can start a workflow that a crash prevented.
    workflow_input: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=32)
    facility_id: str = Field(max_length=64)
    cutoff_at: datetime | None = _utc(nullable=True)
    # The ship-by promise and when the first package left (None: no promise, not shipped).
    ships_by: datetime | None = _utc(nullable=True)
    shipped_at: datetime | None = _utc(nullable=True)
    # What the portal's order search matches (``/portal/orders``): the shipping country and the
    # customer's names and e-mail, lowercased (``domain.portal.customer_search_text``).
    country: str | None = Field(default=None, max_length=2)
    customer: str | None = Field(default=None, max_length=700)
    # The last projected workflow state (domain.orders.OrderState as JSON).
    state: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    version: int = 0
    created_at: datetime = _utc(nullable=False)
    updated_at: datetime = _utc(nullable=False)


class Quote(SQLModel, table=True):
    """A merchant's quote (``POST /v1/quotes``, docs/catalog.md): what it was for and the
    price of each shipping method, held for an order that names it until ``expires_at``."""

    __tablename__ = "quotes"

    id: str = Field(primary_key=True, max_length=40)
    merchant_id: str = Field(foreign_key="merchants.id", index=True, max_length=40)
    country: str = Field(max_length=2)
    currency: str = Field(max_length=3)
    # ``[{product_uid, quantity}]`` as asked, and ``[{shipping_method, facility, items_total,
    # shipping, total}]`` as answered (amounts as decimal strings), cheapest first.
    items: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    options: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _utc(nullable=False)
    expires_at: datetime = _utc(nullable=False)


class OrderStart(SQLModel, table=True):
    """The outbox of workflow starts: one row per order whose workflow may not be running yet.

    Written in the transaction that creates the order, deleted once Temporal has the workflow;
    the relay (``api.relay``) starts what is left, so an order answered 201 always
    gets its workflow, whatever crashed or was down in between.
    """

    __tablename__ = "order_starts"

    order_id: str = Field(foreign_key="orders.id", primary_key=True, max_length=40)
    # When the relay's sweep may (re)try it: a little after creation, then with back-off.
    due_at: datetime = _utc(nullable=False, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    # What the Web UI shows for the workflow (computed once, with the merchant's name).
    static_summary: str = Field(max_length=400)
    static_details: str = Field(max_length=400)


class OrderEvent(SQLModel, table=True):
    __tablename__ = "order_events"

    order_id: str = Field(foreign_key="orders.id", primary_key=True, max_length=40)
    seq: int = Field(primary_key=True)
    at: datetime = _utc(nullable=False)
    type: str = Field(max_length=64)
    detail: Any = Field(default=None, sa_column=Column(JSON, nullable=True))


class PersonalizationLink(SQLModel, table=True):
    """A link e-mailed to the merchant for the end customer; only the token's hash is kept."""

    __tablename__ = "personalization_links"
    __table_args__ = (UniqueConstraint("order_id", "seq"),)

    id: str = Field(primary_key=True, max_length=40)
    order_id: str = Field(foreign_key="orders.id", index=True, max_length=40)
    seq: int  # 1 for the first link of an order, 2 after the first expired, …
    token_hash: str = Field(unique=True, max_length=64)
    expires_at: datetime = _utc(nullable=False)
    used_at: datetime | None = _utc(nullable=True)
    created_at: datetime = _utc(nullable=False)


class ProductionEvent(SQLModel, table=True):
    """What facilities reported, once per facility and ``event_id``: a repeated event is a no-op.

    Each facility numbers its own events, so two facilities may use the same id.
    """

    __tablename__ = "production_events"
    __table_args__ = (
        # The sweep's rows: recorded and not passed (a handful at most, whatever the table's size).
        Index(
            "ix_production_events_unpassed",
            "received_at",
            sqlite_where=text("passed_at IS NULL"),
            postgresql_where=text("passed_at IS NULL"),
        ),
    )

    facility_id: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(primary_key=True, max_length=100)
    order_id: str = Field(foreign_key="orders.id", index=True, max_length=40)
    type: str = Field(max_length=32)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = _utc(nullable=False)
    # Set once the order's workflow has the event (or, for a closed order, its timeline does);
    # until then the facility's retry with the same event_id passes it again, or the API's sweep
    # does (api.services.production).
    passed_at: datetime | None = _utc(nullable=True)


class Claim(SQLModel, table=True):
    """A reprint claim: links the original order and its reorder, with the evidence."""

    __tablename__ = "claims"

    id: str = Field(primary_key=True, max_length=40)
    merchant_id: str = Field(foreign_key="merchants.id", index=True, max_length=40)
    original_order_id: str = Field(foreign_key="orders.id", index=True, max_length=40)
    new_order_id: str = Field(foreign_key="orders.id", index=True, max_length=40)
    reason: str = Field(max_length=20)
    description: str = Field(max_length=2000)
    photo_urls: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    item_reference_ids: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = _utc(nullable=False)


class WebhookEvent(SQLModel, table=True):
    """One event for a merchant's webhook; its id is the same on every delivery attempt."""

    __tablename__ = "webhook_events"

    id: str = Field(primary_key=True, max_length=100)
    merchant_id: str = Field(foreign_key="merchants.id", index=True, max_length=40)
    order_id: str | None = Field(default=None, index=True, max_length=40)
    type: str = Field(max_length=64)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _utc(nullable=False)
    delivered_at: datetime | None = _utc(nullable=True)


class WebhookDelivery(SQLModel, table=True):
    """Each attempt to deliver a webhook event, successful or not."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="webhook_events.id", index=True, max_length=100)
    merchant_id: str = Field(foreign_key="merchants.id", index=True, max_length=40)
    attempt: int
    url: str = Field(max_length=2000)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=1000)
    duration_ms: int = 0
    succeeded: bool = False
    at: datetime = _utc(nullable=False)


class IdempotentRequest(SQLModel, table=True):
    """The first answer to a write sent with ``Idempotency-Key`` (``api.idempotency``).

    Keyed by the caller (sha256 of its credential, never the credential) and the key. A row with
    no ``status_code`` is a request still running; a completed one is replayed to a retry with
    the same method, path and body. Answers of 500 and above are not kept.
    """

    __tablename__ = "idempotent_requests"

    scope: str = Field(sa_column=Column(CHAR(64), primary_key=True))
    key: str = Field(primary_key=True, max_length=200)
    # sha256 of method, path and body: the same key with another request is refused.
    request_hash: str = Field(max_length=64)
    status_code: int | None = None
    response_body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    content_type: str | None = Field(default=None, max_length=200)
    created_at: datetime = _utc(nullable=False)
    completed_at: datetime | None = _utc(nullable=True)


class SupportCase(SQLModel, table=True):
    """A support case: the read model of its workflow (``workflows.cases``).

    The API writes the row as the case is created (its first projection); after that only the
    case's workflow writes it, through its projection, ordered by ``version``.
    """

    __tablename__ = "support_cases"
    __table_args__ = (
        # The merchant's list: newest first, optionally by status.
        Index("ix_support_cases_merchant_created", "merchant_id", "created_at", "id"),
        Index(
            "ix_support_cases_merchant_status_created", "merchant_id", "status", "created_at", "id"
        ),
        # The agents' queue: soonest due first, per queue (cases with no clock last).
        Index("ix_support_cases_queue_due", "queue", "sla_due_at", "number"),
        Index("ix_support_cases_due", "sla_due_at", "number"),
    )

    id: str = Field(primary_key=True, max_length=40)
    # Human and sequential for the whole platform (#1001, #1002 …).
    number: int = Field(unique=True)
    merchant_id: str = Field(foreign_key="merchants.id", max_length=40)
    type: str = Field(max_length=32)
    category: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    priority: str = Field(max_length=16)
    subject: str = Field(max_length=200)
    status: str = Field(max_length=32)
    assignee_id: str | None = Field(default=None, max_length=40)
    queue: str = Field(max_length=16)
    order_id: str | None = Field(default=None, max_length=40)
    request_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    phone: str | None = Field(default=None, max_length=25)
    complaint: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    first_response_due_at: datetime = _utc(nullable=False)
    next_response_due_at: datetime | None = _utc(nullable=True)
    # When the team must answer next (the running clock's target); null when nothing is due.
    sla_due_at: datetime | None = _utc(nullable=True)
    sla_state: str = Field(max_length=16)
    # The last projected workflow state (domain.cases.CaseState as JSON).
    state: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The workflow's input, so the relay can start a workflow that a crash prevented.
    workflow_input: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    version: int = 0
    created_at: datetime = _utc(nullable=False)
    updated_at: datetime = _utc(nullable=False)
    # The Idempotency-Key of the request that created it, hashed with its caller's credential
    # (``api.idempotency.reference``): a retry that runs again finds this row instead of making
    # a second one.
    idempotency_ref: str | None = Field(default=None, max_length=64, unique=True, index=True)


class SupportCaseMessage(SQLModel, table=True):
    """A message of a case: the merchant's, an agent's, or one the case wrote (``system``)."""

    __tablename__ = "support_case_messages"
    __table_args__ = (Index("ix_support_case_messages_case_created", "case_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(foreign_key="support_cases.id", max_length=40)
    author_kind: str = Field(max_length=16)
    author_id: str | None = Field(default=None, max_length=40)
    body: str = Field(sa_column=Column(Text, nullable=False))
    attachments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _utc(nullable=False)


class SupportCaseStart(SQLModel, table=True):
    """The outbox of case workflow starts, as ``order_starts`` is for orders."""

    __tablename__ = "support_case_starts"

    case_id: str = Field(foreign_key="support_cases.id", primary_key=True, max_length=40)
    due_at: datetime = _utc(nullable=False, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    static_summary: str = Field(max_length=400)


class CustomerContact(SQLModel, table=True):
    """A merchant's contact with the customer of one of their orders: the read model of its
    workflow (``workflows.contacts``). The API writes the row as the contact is created;
    after that only the workflow's projection, ordered by ``version``."""

    __tablename__ = "customer_contacts"
    __table_args__ = (
        Index("ix_customer_contacts_merchant_created", "merchant_id", "created_at", "id"),
        Index(
            "ix_customer_contacts_merchant_status_created",
            "merchant_id",
            "status",
            "created_at",
            "id",
        ),
        Index("ix_customer_contacts_support_id", "merchant_id", "support_id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    merchant_id: str = Field(foreign_key="merchants.id", max_length=40)
    order_id: str = Field(foreign_key="orders.id", max_length=40)
    support_id: str = Field(max_length=11)
    reason: str = Field(max_length=32)
    subject: str = Field(max_length=200)
    status: str = Field(max_length=16)
    sla_state: str = Field(max_length=16)
    reply_due_at: datetime | None = _utc(nullable=True)
    # The last projected workflow state (domain.contacts.ContactState as JSON).
    state: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    workflow_input: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    version: int = 0
    created_at: datetime = _utc(nullable=False)
    updated_at: datetime = _utc(nullable=False)
    # The Idempotency-Key of the request that created it, hashed with its caller's credential
    # (``api.idempotency.reference``): a retry that runs again finds this row instead of making
    # a second one.
    idempotency_ref: str | None = Field(default=None, max_length=64, unique=True, index=True)


class CustomerContactMessage(SQLModel, table=True):
    """A message of a contact: the merchant's or the customer's."""

    __tablename__ = "customer_contact_messages"
    __table_args__ = (Index("ix_customer_contact_messages_contact", "contact_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=64)
    contact_id: str = Field(foreign_key="customer_contacts.id", max_length=40)
    author_kind: str = Field(max_length=16)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _utc(nullable=False)


class CustomerContactLink(SQLModel, table=True):
    """A ``/c/{token}`` link e-mailed to the customer: only the token's SHA-256 is kept. Every
    link of a contact works while the contact is open."""

    __tablename__ = "customer_contact_links"

    token_hash: str = Field(primary_key=True, max_length=64)
    contact_id: str = Field(foreign_key="customer_contacts.id", index=True, max_length=40)
    created_at: datetime = _utc(nullable=False)


class CustomerContactDeadline(SQLModel, table=True):
    """One reply deadline of a merchant (started by a customer message): what
    ``GET /v1/support/standards`` counts."""

    __tablename__ = "customer_contact_deadlines"
    __table_args__ = (Index("ix_customer_contact_deadlines_merchant", "merchant_id", "started_at"),)

    id: str = Field(primary_key=True, max_length=64)  # the customer message's id
    contact_id: str = Field(foreign_key="customer_contacts.id", max_length=40)
    merchant_id: str = Field(foreign_key="merchants.id", max_length=40)
    started_at: datetime = _utc(nullable=False)
    due_at: datetime = _utc(nullable=False)
    answered_at: datetime | None = _utc(nullable=True)
    outcome: str | None = Field(default=None, max_length=16)  # in_time | missed


class CustomerContactStart(SQLModel, table=True):
    """The outbox of contact workflow starts, as ``order_starts`` is for orders."""

    __tablename__ = "customer_contact_starts"

    contact_id: str = Field(foreign_key="customer_contacts.id", primary_key=True, max_length=40)
    due_at: datetime = _utc(nullable=False, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    static_summary: str = Field(max_length=400)


class ConfigurationAlert(SQLModel, table=True):
    """A setting of ours that an outside system refuses (a facility's token, the mail sender),
    written by the worker's activities when it happens and read by the API's ``/readyz``.

    One row per ``what`` (``facility:<id>``, ``mail``); ``last_seen`` is refreshed by every
    refused attempt, and the row is deleted by the next call that goes through.
    """

    __tablename__ = "configuration_alerts"

    what: str = Field(primary_key=True, max_length=100)
    setting: str = Field(max_length=200)  # the setting to fix, e.g. PRINTFLOW_MAIL_FROM
    message: str = Field(max_length=500)
    first_seen: datetime = _utc(nullable=False)
    last_seen: datetime = _utc(nullable=False)
