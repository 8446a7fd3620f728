"""The API's public models: what requests carry and what answers hold, in one place.

The order itself (``OrderPublic`` and its parts) is defined in ``domain.views``, because webhook
payloads carry the same shape; it is re-exported here so routes find every model in one module.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    field_validator,
    model_validator,
)

from domain.cases import CaseSummary
from domain.contacts import ContactSummary
from domain.merchants import CountryCode, TimezoneName
from domain.orders import Approval, Email, PersonalizationStatus, StoredPersonalizationField
from domain.support import Includes, Plan, PlanName
from domain.text import InputModel
from domain.views import (
    AllowedActions,
    FacilityPublic,
    ItemPersonalization,
    ItemPublic,
    OrderPage,
    OrderPublic,
    TimelineEventPublic,
)

__all__ = [
    "AllowedActions",
    "FacilityPublic",
    "ItemPersonalization",
    "ItemPublic",
    "OrderPage",
    "OrderPublic",
    "TimelineEventPublic",
]


# ---------------------------------------------------------------------------- merchants


class PortalOwner(InputModel):
    """The merchant's first portal user, role ``owner``: invited by e-mail to set a password."""

    email: Email
    name: str = Field(min_length=1, max_length=200)


class MerchantCreate(InputModel):
    name: str = Field(min_length=1, max_length=200)
    support_email: Email
    webhook_url: HttpUrl | None = None
    approval: Approval = "auto"
    plan: PlanName = Field(
        default=Plan.FREE,
        description="free, lite, growth or premium; the legacy names essential, small_shop, "
        "large_shop and business are taken and stored as their new names",
    )
    timezone: TimezoneName = Field(default="UTC", description="IANA name, e.g. Europe/Berlin")
    country: CountryCode | None = Field(default=None, description="ISO 3166-1 alpha-2")
    owner: PortalOwner | None = Field(
        default=None,
        description="the first user of the merchant portal (/portal), as owner; the answer "
        "holds their invite link, which is also e-mailed to them",
    )


class MerchantUpdate(InputModel):
    """``PATCH /v1/admin/merchants/{id}``: only the fields sent change; ``country`` and
    ``csm_agent_id`` may be sent as null to clear them."""

    plan: PlanName | None = None
    timezone: TimezoneName | None = None
    country: CountryCode | None = None
    csm_agent_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="an agent of role csm: the merchant's dedicated customer success manager",
    )

    @field_validator("plan", "timezone", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


class MerchantPublic(BaseModel):
    id: str
    name: str
    support_email: str
    webhook_url: str | None
    approval: Approval
    plan: Plan
    timezone: str
    country: str | None
    csm_agent_id: str | None
    created_at: datetime


class MerchantCreated(MerchantPublic):
    api_key: str = Field(description="shown once; printflow keeps only its hash")
    webhook_secret: str = Field(description="shown once; signs the webhooks sent to you")
    owner_invite_url: str | None = Field(
        default=None,
        description="with an owner: the link where they set their password (once, for 7 days); "
        "shown once",
    )


class ApiKeyRotated(BaseModel):
    api_key: str = Field(description="the new key, shown once; printflow keeps only its hash")
    previous_valid_until: datetime = Field(description="the replaced key works until then")


class WebhookSecretRotated(BaseModel):
    webhook_secret: str = Field(description="the new secret, shown once")
    previous_valid_until: datetime = Field(
        description="until then every webhook carries a second v1= signature, by the old secret"
    )


# ---------------------------------------------------------------------------- support plans


class CsmPublic(BaseModel):
    """The merchant's dedicated customer success manager."""

    name: str
    email: str


class SupportPlan(BaseModel):
    """``GET /v1/support/plan``: the plan, what it includes, and the CSM when there is one."""

    plan: Plan
    includes: Includes
    csm: CsmPublic | None = Field(
        default=None, description="only when the plan includes a CSM and one is assigned"
    )


# ---------------------------------------------------------------------------- support team

AgentRole = Literal["agent", "csm"]


class AgentCreate(InputModel):
    name: str = Field(min_length=1, max_length=200)
    email: Email
    role: AgentRole = "agent"


class AgentPublic(BaseModel):
    id: str
    name: str
    email: str
    role: AgentRole
    active: bool
    token_prefix: str = Field(description="the first characters of the token, to tell them apart")
    created_at: datetime


class AgentCreated(AgentPublic):
    token: str = Field(description="X-Agent-Token; shown once, printflow keeps only its hash")


class AgentList(BaseModel):
    data: list[AgentPublic]


# ---------------------------------------------------------------------------- failed requests


class RequestLogEntry(BaseModel):
    """A merchant's request answered 400 or above, as support sees it (kept 30 days): never
    its body, headers or query string."""

    request_id: str = Field(description="the X-Request-Id of the answer")
    method: str
    route: str = Field(description="the route's template, e.g. /v1/orders/{order_id}")
    status: int
    error_code: str | None = Field(description="error.code of the answer's envelope")
    created_at: datetime


# ---------------------------------------------------------------------------- reprints

ClaimReason = Literal["damaged", "defective", "misprint", "lost"]
PHOTOS_REQUIRED: frozenset[str] = frozenset({"damaged", "defective"})


class ReorderRequest(InputModel):
    reason: ClaimReason
    description: str = Field(min_length=1, max_length=2000)
    photo_urls: list[HttpUrl] = Field(
        default_factory=list,
        max_length=20,
        description="required for damaged and defective: what the customer received",
    )
    item_reference_ids: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the items to reprint; all items of the original when omitted",
    )

    @model_validator(mode="after")
    def _evidence(self) -> ReorderRequest:
        if self.reason in PHOTOS_REQUIRED and not self.photo_urls:
            raise ValueError(f"photo_urls are required for a {self.reason} claim")
        ids = self.item_reference_ids or []
        if len(ids) != len(set(ids)):
            raise ValueError("item_reference_ids must not repeat")
        return self


class ClaimPublic(BaseModel):
    id: str
    original_order_id: str
    original_order_reference_id: str
    new_order_id: str
    new_order_reference_id: str
    reason: str
    description: str
    photo_urls: list[str]
    item_reference_ids: list[str]
    created_at: datetime


class ReorderCreated(BaseModel):
    order: OrderPublic
    claim: ClaimPublic


class ClaimPage(BaseModel):
    data: list[ClaimPublic]
    next_cursor: str | None


# ---------------------------------------------------------------------------- personalization

_Key = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_Value = Annotated[str, StringConstraints(max_length=10_000)]


class PersonalizationIn(BaseModel):
    """``{"items": {item_reference_id: {field name: value}}}``; optional fields may be left out."""

    model_config = ConfigDict(extra="forbid")

    items: dict[_Key, dict[_Key, _Value]] = Field(max_length=100)


# ---------------------------------------------------------------------------- facilities


class EventAccepted(BaseModel):
    accepted: bool = True
    duplicate: bool


# ---------------------------------------------------------------------------- webhooks

DeliveryOutcome = Literal["succeeded", "failed", "given_up"]


class DeliveryPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    order_id: str | None
    attempt: int
    outcome: DeliveryOutcome
    url: str
    status_code: int | None
    error: str | None
    duration_ms: int
    at: datetime


class DeliveryPage(BaseModel):
    data: list[DeliveryPublic]
    next_cursor: str | None


class WebhookEventPublic(BaseModel):
    id: str
    type: str
    order_id: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


class WebhookEventPage(BaseModel):
    data: list[WebhookEventPublic]
    next_cursor: str | None


class Redelivery(BaseModel):
    event_id: str
    queued: bool = True


# ---------------------------------------------------------------------------- support cases


class CaseMessagePublic(BaseModel):
    id: str
    author_kind: Literal["merchant", "agent", "system"]
    author_id: str | None
    author_name: str | None = Field(
        default=None, description="the agent's name, for the support team's messages"
    )
    body: str
    attachments: list[str]
    created_at: datetime


class CasePublic(CaseSummary):
    """A support case as ``GET /v1/support/cases/{id}`` (and the agents' endpoints) show it."""

    merchant_id: str
    phone: str | None = None
    complaint: dict[str, Any] | None = None
    request_ids: list[str] = Field(
        description="the X-Request-Id values linked to the case: the merchant's own failed "
        "requests (others sent with the case are dropped)"
    )
    requests: list[RequestLogEntry] = Field(
        description="what those requests were and what they got"
    )
    messages: list[CaseMessagePublic]
    closed_at: datetime | None = None
    close_reason: str | None = None


class CasePage(BaseModel):
    """The merchant's cases, newest first; or the agents' queue, soonest due first."""

    data: list[CaseSummary]
    next_cursor: str | None


# ---------------------------------------------------------------------------- customer contacts


class ContactMessagePublic(BaseModel):
    id: str
    author_kind: Literal["merchant", "customer", "system"]
    body: str
    created_at: datetime


class ContactPublic(ContactSummary):
    """A customer contact with its whole thread, oldest message first."""

    merchant_id: str
    messages: list[ContactMessagePublic]


class ContactPage(BaseModel):
    data: list[ContactSummary]
    next_cursor: str | None


class StandardsWindow(BaseModel):
    """The days a standard is counted over: the last ``window_days``, ``since`` to ``until``."""

    window_days: int
    since: datetime
    until: datetime


class ReplyStandards(StandardsWindow):
    """How a merchant kept the reply target to their customers over the window."""

    target: str = Field(description="customer_reply.target, ISO 8601 business time")
    deadlines: int = Field(description="customer messages whose reply was due (in time or missed)")
    replied_in_time: int
    missed: int
    reply_in_time_rate: float | None = Field(
        description="replied_in_time / deadlines, 0..1; null when nothing was due"
    )
    pending: int = Field(description="started in the window, reply not yet due nor given")


class ShipByStandards(StandardsWindow):
    """How a merchant's orders shipped by their ship-by promise over the window."""

    orders: int = Field(description="orders whose ships_by came due in the window (not canceled)")
    shipped_in_time: int = Field(description="of those, shipped by their ships_by")
    late: int = Field(description="of those, shipped after it or not shipped yet")
    shipped_in_time_rate: float | None = Field(
        description="shipped_in_time / orders, 0..1; null when no promise came due"
    )
    pending: int = Field(description="ships_by in the window's future, not shipped yet")


class SupportStandards(BaseModel):
    merchant_id: str
    customer_reply: ReplyStandards
    ship_by: ShipByStandards


# ------------------------------------------------------------ personalization (the customer's)


class PersonalizationItemPublic(BaseModel):
    item_reference_id: str
    product_uid: str
    quantity: int
    fields: list[StoredPersonalizationField]
    status: PersonalizationStatus
    values: dict[str, str] | None = None


class PersonalizationPublic(BaseModel):
    """What the customer's page shows, and no more: never the address, e-mail, metadata or
    prices of the order."""

    shop_name: str
    order_reference_id: str
    expires_at: datetime
    items: list[PersonalizationItemPublic]


# ---------------------------------------------------------------------------- catalog and quotes


class PrintAreaPublic(BaseModel):
    name: str
    width_mm: int
    height_mm: int
    bleed_mm: int
    min_dpi: int


class ProductPublic(BaseModel):
    """A product of the catalog; ``prices`` per currency as decimal strings."""

    product_uid: str
    name: str
    kind: str
    print_areas: list[PrintAreaPublic]
    file_types: list[str]
    weight_g: int
    production_days: int
    prices: dict[str, Decimal]


class ProductPage(BaseModel):
    data: list[ProductPublic]
    next_cursor: str | None


class TransitDays(BaseModel):
    min: int
    max: int


class MethodPricePublic(BaseModel):
    first_item: Decimal
    each_further_item: Decimal


class ShippingMethodPublic(BaseModel):
    """A shipping method that reaches the country asked about, with its transit business days
    there and its prices per currency."""

    id: str
    name: str
    tracked: bool
    country: str
    transit_days: TransitDays
    prices: dict[str, MethodPricePublic]


class ShippingMethodList(BaseModel):
    data: list[ShippingMethodPublic]


class QuoteAddress(InputModel):
    country: CountryCode = Field(description="ISO 3166-1 alpha-2")
    post_code: str | None = Field(default=None, max_length=15)
    state: str | None = Field(default=None, max_length=35)


class QuoteItem(InputModel):
    product_uid: str = Field(min_length=1, max_length=128)
    quantity: int = Field(ge=1, le=1000)


class QuoteRequest(InputModel):
    shipping_address: QuoteAddress
    items: list[QuoteItem] = Field(min_length=1, max_length=100)
    currency: Literal["EUR", "USD", "GBP"]


class DeliveryEstimatePublic(BaseModel):
    earliest: date
    latest: date


class QuoteOptionPublic(BaseModel):
    """One way to make and ship the items: amounts exact (decimal strings), times in UTC."""

    shipping_method: str
    shipping_method_name: str
    tracked: bool
    facility: str
    currency: str
    items_total: Decimal
    shipping: Decimal
    total: Decimal
    cutoff_at: datetime
    ships_by: datetime
    delivery_estimate: DeliveryEstimatePublic


class QuotePublic(BaseModel):
    """``POST /v1/quotes``: every available shipping method, cheapest first. Pass ``id`` as an
    order's ``quote_id`` before ``expires_at`` to keep these prices."""

    id: str
    expires_at: datetime
    country: str
    currency: str
    items: list[QuoteItem]
    quotes: list[QuoteOptionPublic]
