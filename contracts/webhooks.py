"""What the webhook delivery workflow exchanges with its callers and its activities.

Only event ids travel through Temporal: payloads stay in the database and the signing secret is
read by the delivering activity, so neither ever lands in a workflow history.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# The signal name is also given to signal-with-start, which takes names only.
ENQUEUE_SIGNAL = "enqueue"


def delivery_workflow_id(order_id: str) -> str:
    return f"webhooks-{order_id}"


class EnqueueWebhooks(BaseModel):
    """The signal to an order's delivery workflow: event ids only, never payloads or secrets."""

    event_ids: list[str]
    # An explicit redelivery sends the event again even if it was delivered before.
    redeliver: bool = False


class QueuedEvent(BaseModel):
    event_id: str
    redeliver: bool = False


class WebhookDeliveryInput(BaseModel):
    order_id: str
    # Carried over when the workflow continues as new.
    queue: list[QueuedEvent] = []
    done: list[str] = []
    # A run continues as new after this many deliveries (or when Temporal suggests it).
    deliveries_per_run: int = 500


class DeliverWebhook(BaseModel):
    event_id: str
    redeliver: bool = False


class DeliveryResult(BaseModel):
    outcome: Literal["delivered", "already_delivered", "no_webhook_url"]
    attempt: int = 0
    status_code: int | None = None


class GiveUp(BaseModel):
    event_id: str
