"""Webhooks to merchants: which order changes become events, how they are signed and delivered.

- ``WebhookEmitter`` turns what the order workflow projects (and issued personalization links)
  into rows of ``webhook_events`` with deterministic ids, then hands the ids to the order's
  ``WebhookDeliveryWorkflow`` (signal-with-start). Only ids travel through Temporal: payloads
  stay in the database and the signing secret is read by the activity at send time, so neither
  ever lands in a workflow history.
- ``WebhookActivities.deliver_webhook`` makes one signed POST, records the attempt in
  ``webhook_deliveries`` and raises on anything but 2xx, so Temporal retries it with back-off.
- ``sign`` / ``verify_signature`` are the scheme documented in ``docs/webhooks.md``.

The order workflow never waits for a receiver: emitting is two database writes and one signal,
and the delivery runs in its own workflow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from api.schemas import order_public
from db.engine import insert_new, session_factory
from db.models import Merchant, Order, WebhookDelivery, WebhookEvent
from domain.orders import OrderState, Status, TimelineEvent

log = logging.getLogger("printflow.webhooks")

EVENT_ID_HEADER = "Printflow-Event-Id"
TIMESTAMP_HEADER = "Printflow-Timestamp"
SIGNATURE_HEADER = "Printflow-Signature"
SIGNATURE_VERSION = "v1"
# What docs/webhooks.md tells receivers: reject timestamps further than this from their clock.
REPLAY_WINDOW = timedelta(minutes=5)

DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"
ENQUEUE_SIGNAL = "enqueue"
EVENT_MISSING = "WebhookEventMissing"
DELIVERY_FAILED = "WebhookDeliveryFailed"

STATUS_UPDATED = "order.status_updated"
SHIPMENT_CREATED = "order.shipment_created"
ON_HOLD = "order.on_hold"
LINK_ISSUED = "order.personalization_link_issued"
EVENT_TYPES = (STATUS_UPDATED, SHIPMENT_CREATED, ON_HOLD, LINK_ISSUED)


def delivery_workflow_id(order_id: str) -> str:
    return f"webhooks-{order_id}"


# ---------------------------------------------------------------------------- signatures


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent: stable for a stored payload, so every retry carries the same body."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of "{timestamp}.{body}">``, the ``Printflow-Signature`` header."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance: timedelta = REPLAY_WINDOW,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent.

    The header may carry several comma-separated ``v1=`` values (room for secret rotation);
    one match is enough.
    """
    if not timestamp or not signature:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance.total_seconds():
        return False
    expected = sign(secret, sent_at, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))


# ---------------------------------------------------------------------------- messages


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


async def enqueue_deliveries(
    client: Client,
    task_queue: str,
    order_id: str,
    event_ids: list[str],
    *,
    redeliver: bool = False,
) -> None:
    """Signal-with-start: queues the ids on the order's delivery workflow, starting it if idle."""
    await client.start_workflow(
        DELIVERY_WORKFLOW,
        WebhookDeliveryInput(order_id=order_id),
        id=delivery_workflow_id(order_id),
        task_queue=task_queue,
        start_signal=ENQUEUE_SIGNAL,
        start_signal_args=[EnqueueWebhooks(event_ids=event_ids, redeliver=redeliver)],
        static_summary=f"Webhooks of order {order_id}, delivered in order",
    )


# ---------------------------------------------------------------------------- emitting


def order_payload(state: OrderState, at: datetime) -> dict[str, Any]:
    """The order as the API shows it (without its timeline), as of ``at``."""
    return order_public(state, [], at).model_dump(mode="json", exclude={"events"})


def events_for(state: OrderState, event: TimelineEvent) -> list[tuple[str, str, dict[str, Any]]]:
    """(id suffix, webhook type, extra data) for each webhook one timeline event causes.

    The status change comes first, so a receiver sees ``shipped`` before the shipment details
    of the same moment.
    """
    out: list[tuple[str, str, dict[str, Any]]] = []
    if event.status is not None:
        out.append(("status", STATUS_UPDATED, {"status": event.status}))
    detail = event.detail if isinstance(event.detail, dict) else {}
    if event.type == "shipment":
        shipment = {k: detail.get(k) for k in ("carrier", "tracking_code", "tracking_url")}
        out.append(("shipment", SHIPMENT_CREATED, {"shipment": shipment}))
    elif event.type == "on_hold" or event.status == Status.ON_HOLD:
        # A facility's issue report, or a print job the facility refused (print_job_rejected).
        hold = {"kind": detail.get("kind"), "description": detail.get("description")}
        if state.hold is not None and hold["kind"] is None:
            hold = {"kind": state.hold.kind, "description": state.hold.description}
        out.append(("hold", ON_HOLD, {"hold": hold}))
    return out


class WebhookEmitter:
    """Stores webhook events and queues them for delivery; implements ``LinkWebhooks``."""

    def __init__(
        self,
        engine: AsyncEngine,
        client: Client,
        task_queue: str,
        *,
        cache_ttl: timedelta = timedelta(seconds=30),
    ) -> None:
        self._engine = engine
        self._client = client
        self._task_queue = task_queue
        self._cache_ttl = cache_ttl.total_seconds()
        # merchant id -> (webhook url or None, monotonic expiry): one lookup per merchant and
        # TTL instead of one per projection; a changed URL is picked up within the TTL.
        self._urls: dict[str, tuple[str | None, float]] = {}

    async def order_changed(self, state: OrderState, events: Iterable[TimelineEvent]) -> list[str]:
        """Called by the projection after its transaction; returns the queued event ids."""
        planned = [(e, spec) for e in events for spec in events_for(state, e)]
        if not planned or await self._webhook_url(state.merchant_id) is None:
            return []
        rows: list[dict[str, Any]] = []
        ids: list[str] = []
        for event, (suffix, type_, extra) in planned:
            # Deterministic: a retried projection finds its event already stored.
            event_id = f"evt_{state.order_id}_{event.seq}_{suffix}"
            ids.append(event_id)
            payload = {
                "id": event_id,
                "type": type_,
                "created_at": event.at.isoformat(),
                "data": {"order": order_payload(state, event.at), **extra},
            }
            rows.append(
                {
                    "id": event_id,
                    "merchant_id": state.merchant_id,
                    "order_id": state.order_id,
                    "type": type_,
                    "created_at": event.at,
                    "payload": payload,
                }
            )
        await self._store(rows)
        await enqueue_deliveries(self._client, self._task_queue, state.order_id, ids)
        return ids

    async def link_issued(
        self, *, merchant_id: str, order_id: str, url: str, expires_at: datetime
    ) -> None:
        """A personalization link was issued: merchants may forward it to the customer."""
        if await self._webhook_url(merchant_id) is None:
            return
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(Order.state).where(Order.id == order_id))).first()
        if row is None:
            log.warning("link issued for unknown order %s; no webhook", order_id)
            return
        state = OrderState.model_validate(row[0])
        now = datetime.now(UTC)
        # The token is part of the URL; the id carries only a digest of it.
        event_id = f"evt_{order_id}_link_{hashlib.sha256(url.encode()).hexdigest()[:16]}"
        data = {
            "order": order_payload(state, now),
            "personalization_link": {"url": url, "expires_at": expires_at.isoformat()},
        }
        payload = {
            "id": event_id,
            "type": LINK_ISSUED,
            "created_at": now.isoformat(),
            "data": data,
        }
        await self._store(
            [
                {
                    "id": event_id,
                    "merchant_id": merchant_id,
                    "order_id": order_id,
                    "type": LINK_ISSUED,
                    "created_at": now,
                    "payload": payload,
                }
            ]
        )
        await enqueue_deliveries(self._client, self._task_queue, order_id, [event_id])

    async def _store(self, rows: list[dict[str, Any]]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert_new(self._engine, WebhookEvent, rows))

    async def _webhook_url(self, merchant_id: str) -> str | None:
        cached = self._urls.get(merchant_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(Merchant.webhook_url).where(Merchant.id == merchant_id))
            ).first()
        url = row[0] if row is not None else None
        self._urls[merchant_id] = (url, time.monotonic() + self._cache_ttl)
        return url


# ---------------------------------------------------------------------------- delivering


class WebhookActivities:
    """Sends one event per call; the delivery workflow orders and retries the calls."""

    def __init__(
        self, engine: AsyncEngine, http: httpx.AsyncClient, *, timeout: float = 10.0
    ) -> None:
        self._sessions = session_factory(engine)
        self._engine = engine
        self._http = http
        self._timeout = timeout

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, request: DeliverWebhook) -> DeliveryResult:
        async with self._sessions() as session:
            event = await session.get(WebhookEvent, request.event_id)
            if event is None:
                raise ApplicationError(
                    f"no webhook event {request.event_id}", type=EVENT_MISSING, non_retryable=True
                )
            if event.delivered_at is not None and not request.redeliver:
                return DeliveryResult(outcome="already_delivered")
            merchant = await session.get(Merchant, event.merchant_id)
            url = merchant.webhook_url if merchant is not None else None
            if merchant is None or not url:
                log.info("webhook %s not sent: the merchant has no webhook_url", event.id)
                return DeliveryResult(outcome="no_webhook_url")
            secret = merchant.webhook_secret
            last = (
                await session.exec(
                    select(func.max(WebhookDelivery.attempt)).where(
                        WebhookDelivery.event_id == event.id
                    )
                )
            ).one()
            attempt = (last or 0) + 1
            body = body_bytes(event.payload)
            event_id, merchant_id = event.id, event.merchant_id

        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "printflow-webhooks/1",
            EVENT_ID_HEADER: event_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._http.post(
                url, content=body, headers=headers, timeout=self._timeout
            )
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = int((time.perf_counter() - started) * 1000)
        succeeded = error is None
        now = datetime.now(UTC)

        async with self._sessions() as session:
            session.add(
                WebhookDelivery(
                    event_id=event_id,
                    merchant_id=merchant_id,
                    attempt=attempt,
                    url=url,
                    status_code=status_code,
                    error=error[:1000] if error else None,
                    duration_ms=duration_ms,
                    succeeded=succeeded,
                    at=now,
                )
            )
            if succeeded:
                await session.exec(
                    update(WebhookEvent)
                    .where(
                        col(WebhookEvent.id) == event_id,
                        col(WebhookEvent.delivered_at).is_(None),
                    )
                    .values(delivered_at=now)
                )
            await session.commit()

        if not succeeded:
            # Raised for Temporal to retry with back-off. The message goes into the workflow
            # history, so it names the status only: no URL (it may hold a token), no body.
            what = f"HTTP {status_code}" if status_code is not None else "no answer"
            raise ApplicationError(
                f"webhook {event_id} attempt {attempt}: {what}", type=DELIVERY_FAILED
            )
        log.info("webhook %s delivered (attempt %d, HTTP %s)", event_id, attempt, status_code)
        return DeliveryResult(outcome="delivered", attempt=attempt, status_code=status_code)

    @activity.defn(name="webhook_given_up")
    async def webhook_given_up(self, request: GiveUp) -> None:
        """Records that retries ran out: a row with attempt 0 that the deliveries API shows."""
        async with self._sessions() as session:
            event = await session.get(WebhookEvent, request.event_id)
            if event is None:
                return
            tried = list(
                await session.exec(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.event_id == event.id, WebhookDelivery.attempt > 0)
                    .order_by(col(WebhookDelivery.attempt).desc())
                )
            )
            merchant = await session.get(Merchant, event.merchant_id)
            last = tried[0] if tried else None
            reason = f"gave up after {len(tried)} attempts"
            if last is not None and last.error:
                reason += f"; last: {last.error}"
            session.add(
                WebhookDelivery(
                    event_id=event.id,
                    merchant_id=event.merchant_id,
                    attempt=0,
                    url=(last.url if last else None) or (merchant and merchant.webhook_url) or "",
                    status_code=None,
                    error=reason[:1000],
                    duration_ms=0,
                    succeeded=False,
                    at=datetime.now(UTC),
                )
            )
            await session.commit()
        log.warning("webhook %s given up: %s", request.event_id, reason)
