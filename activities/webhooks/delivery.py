"""Delivering webhooks: one signed POST per activity call, every attempt recorded.

The POST itself (signing, the URL checks, the pinned connection) is ``integrations.webhooks``;
these activities read the event and the merchant's secrets, and record each attempt.
``deliver_webhook`` raises on anything but 2xx, so Temporal retries it with back-off; the
delivery workflow (``workflows/webhooks.py``) orders the calls per order and decides when to
give up, which ``webhook_given_up`` records for the merchant's deliveries API.
"""

from __future__ import annotations

import logging

import httpx
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.errors import DELIVERY_FAILED, EVENT_MISSING
from contracts.webhooks import DeliverWebhook, DeliveryResult, GiveUp
from db.engine import session_factory, utcnow
from db.models import Merchant, WebhookDelivery, WebhookEvent
from integrations.webhooks import TIMEOUT_SECONDS, WebhookSender, body_bytes

log = logging.getLogger("printflow.webhooks")


class WebhookActivities:
    """Sends one event per call; the delivery workflow orders and retries the calls.

    ``allow_private`` (``WEBHOOK_ALLOW_PRIVATE``): http and private addresses are allowed.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        *,
        timeout: float = TIMEOUT_SECONDS,
        allow_private: bool = False,
    ) -> None:
        self._sessions = session_factory(engine)
        self._sender = WebhookSender(http, timeout=timeout, allow_private=allow_private)

    @activity.defn
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
            # During a rotation's overlap both secrets sign: a receiver accepts either.
            secrets = [merchant.webhook_secret]
            previous = merchant.previous_webhook_secret
            until = merchant.previous_webhook_secret_valid_until
            if previous and until is not None and utcnow() < until:
                secrets.append(previous)
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

        sent = await self._sender.send(url, event_id, body, secrets)
        now = utcnow()

        async with self._sessions() as session:
            session.add(
                WebhookDelivery(
                    event_id=event_id,
                    merchant_id=merchant_id,
                    attempt=attempt,
                    url=url,
                    status_code=sent.status_code,
                    error=sent.error[:1000] if sent.error else None,
                    duration_ms=sent.duration_ms,
                    succeeded=sent.succeeded,
                    at=now,
                )
            )
            if sent.succeeded:
                await session.exec(
                    update(WebhookEvent)
                    .where(
                        col(WebhookEvent.id) == event_id,
                        col(WebhookEvent.delivered_at).is_(None),
                    )
                    .values(delivered_at=now)
                )
            await session.commit()

        if not sent.succeeded:
            # Raised for Temporal to retry with back-off. The message goes into the workflow
            # history, so it names the status only: no URL (it may hold a token), no body.
            what = f"HTTP {sent.status_code}" if sent.status_code is not None else sent.error
            raise ApplicationError(
                f"webhook {event_id} attempt {attempt}: {what}", type=DELIVERY_FAILED
            )
        log.info("webhook %s delivered (attempt %d, HTTP %s)", event_id, attempt, sent.status_code)
        return DeliveryResult(outcome="delivered", attempt=attempt, status_code=sent.status_code)

    @activity.defn
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
                    at=utcnow(),
                )
            )
            await session.commit()
        log.warning("webhook %s given up: %s", request.event_id, reason)
