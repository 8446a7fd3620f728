"""The API's public models: what requests carry and what answers hold, in one place.

The order itself (``OrderPublic`` and its parts) is defined in ``domain.views``, because webhook
payloads carry the same shape; it is re-exported here so routes find every model in one module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, model_validator

from domain.orders import Approval, Email
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


class MerchantCreate(InputModel):
    name: str = Field(min_length=1, max_length=200)
    support_email: Email
    webhook_url: HttpUrl | None = None
    approval: Approval = "auto"


class MerchantCreated(BaseModel):
    id: str
    name: str
    support_email: str
    webhook_url: str | None
    approval: Approval
    created_at: datetime
    api_key: str = Field(description="shown once; printflow keeps only its hash")
    webhook_secret: str = Field(description="shown once; signs the webhooks sent to you")


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
