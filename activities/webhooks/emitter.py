"""Which order changes become webhook events, and queuing them for delivery.

``WebhookEmitter`` turns what the order workflow projects (and issued personalization links)
into rows of ``webhook_events`` with deterministic ids, then hands the ids to the order's
delivery workflow through ``enqueue`` (signal-with-start, wired by the worker). Only ids travel
through Temporal: payloads stay in the database.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from db.engine import insert_statement, utcnow
from db.models import Merchant, Order, WebhookEvent
from domain.cases import CaseState, case_summary
from domain.contacts import ContactMessage, ContactState, contact_summary
from domain.orders import EventType, OrderState, Status, TimelineEvent
from domain.views import order_public

log = logging.getLogger("printflow.webhooks")

STATUS_UPDATED = "order.status_updated"
SHIPMENT_CREATED = "order.shipment_created"
ON_HOLD = "order.on_hold"
LINK_ISSUED = "order.personalization_link_issued"
DELAYED = "order.delayed"
CASE_UPDATED = "support_case.updated"
CONTACT_MESSAGE = "customer_contact.message_received"
EVENT_TYPES = (
    STATUS_UPDATED,
    SHIPMENT_CREATED,
    ON_HOLD,
    LINK_ISSUED,
    DELAYED,
    CASE_UPDATED,
    CONTACT_MESSAGE,
)

# Queues event ids on an order's (or a support case's) delivery workflow: (id, event_ids).
Enqueue = Callable[[str, list[str]], Awaitable[None]]


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
    if event.type is EventType.SHIPMENT:
        shipment = {k: detail.get(k) for k in ("carrier", "tracking_code", "tracking_url")}
        out.append(("shipment", SHIPMENT_CREATED, {"shipment": shipment}))
    elif event.type is EventType.LATE:
        delay = {k: detail.get(k) for k in ("ships_by", "estimated_ships_by", "delivery_estimate")}
        out.append(("delayed", DELAYED, {"delay": delay}))
    elif event.type is EventType.ON_HOLD or event.status == Status.ON_HOLD:
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
        enqueue: Enqueue,
        *,
        cache_ttl: timedelta = timedelta(seconds=30),
    ) -> None:
        self._engine = engine
        self._enqueue = enqueue
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
        await self._enqueue(state.order_id, ids)
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
        now = utcnow()
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
        await self._enqueue(order_id, [event_id])

    async def case_changed(self, state: CaseState, changes: list[str]) -> list[str]:
        """A support case changed (its projection is committed): one ``support_case.updated``
        event per version, delivered in order on the case's own delivery workflow."""
        if not changes or await self._webhook_url(state.merchant_id) is None:
            return []
        # Deterministic: a retried projection finds its event already stored.
        event_id = f"evt_{state.case_id}_v{state.version}"
        payload = {
            "id": event_id,
            "type": CASE_UPDATED,
            "created_at": state.updated_at.isoformat(),
            "data": {"case": case_summary(state).model_dump(mode="json"), "changes": changes},
        }
        await self._store(
            [
                {
                    "id": event_id,
                    "merchant_id": state.merchant_id,
                    "order_id": None,
                    "type": CASE_UPDATED,
                    "created_at": state.updated_at,
                    "payload": payload,
                }
            ]
        )
        await self._enqueue(state.case_id, [event_id])
        return [event_id]

    async def contact_message_received(
        self, state: ContactState, messages: list[ContactMessage]
    ) -> list[str]:
        """A customer wrote (the projection holding the message is committed): one
        ``customer_contact.message_received`` per message, on the contact's delivery workflow."""
        if not messages or await self._webhook_url(state.merchant_id) is None:
            return []
        rows: list[dict[str, Any]] = []
        for message in messages:
            # Deterministic: a retried projection finds its event already stored.
            event_id = f"evt_{state.contact_id}_{message.id}"
            payload = {
                "id": event_id,
                "type": CONTACT_MESSAGE,
                "created_at": message.created_at.isoformat(),
                "data": {
                    "contact": contact_summary(state).model_dump(mode="json"),
                    "message": message.model_dump(mode="json"),
                },
            }
            rows.append(
                {
                    "id": event_id,
                    "merchant_id": state.merchant_id,
                    "order_id": None,
                    "type": CONTACT_MESSAGE,
                    "created_at": message.created_at,
                    "payload": payload,
                }
            )
        await self._store(rows)
        ids = [row["id"] for row in rows]
        await self._enqueue(state.contact_id, ids)
        return ids

    async def _store(self, rows: list[dict[str, Any]]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert_statement(conn.dialect.name, WebhookEvent), rows)

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
