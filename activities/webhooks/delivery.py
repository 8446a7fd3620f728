"""Delivering webhooks: one signed POST per activity call, every attempt recorded.

``deliver_webhook`` raises on anything but 2xx, so Temporal retries it with back-off; the
delivery workflow (``workflows/webhooks.py``) orders the calls per order and decides when to
give up, which ``webhook_given_up`` records for the merchant's deliveries API.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.webhooks.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    body_bytes,
    sign_all,
)
from contracts.errors import DELIVERY_FAILED, EVENT_MISSING
from contracts.webhooks import DeliverWebhook, DeliveryResult, GiveUp
from db.engine import session_factory
from db.models import Merchant, WebhookDelivery, WebhookEvent
from domain.webhook_urls import addresses_problem, literal_address, url_problem

log = logging.getLogger("printflow.webhooks")


class Refused(Exception):
    """The URL may not be called: ``kind`` is what the delivery record keeps."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address is its own answer)."""
    literal = literal_address(host)
    if literal is not None:
        return [str(literal)]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def pinned_request(url: str, *, allow_private: bool) -> tuple[httpx.URL, dict[str, Any]]:
    """The URL to connect to and the request's extensions: the host resolved once, every
    address checked, and the request sent to the checked address with the original name in
    ``Host`` and TLS (SNI and certificate), so a second DNS answer cannot redirect it."""
    # The name's spelling is not judged here: what it resolves to is.
    problem = url_problem(url, allow_private=allow_private, local_names=False)
    if problem is not None:
        raise Refused("refused_address" if "address" in problem else "refused_url", problem)
    target = httpx.URL(url)
    host = target.host
    try:
        addresses = await resolve(host, target.port or (443 if target.scheme == "https" else 80))
    except OSError as err:
        raise Refused("dns_error", f"{host} does not resolve: {err}") from None
    problem = addresses_problem(host, addresses, allow_private=allow_private)
    if problem is not None or not addresses:
        raise Refused("refused_address", problem or f"{host} resolves to nothing")
    pinned = target.copy_with(host=addresses[0])
    return pinned, {"sni_hostname": host}


def _error_kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol_error"
    return "request_error"


class WebhookActivities:
    """Sends one event per call; the delivery workflow orders and retries the calls.

    ``allow_private`` (``WEBHOOK_ALLOW_PRIVATE``): http and private addresses are allowed.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        *,
        timeout: float = 10.0,
        allow_private: bool = False,
    ) -> None:
        self._sessions = session_factory(engine)
        self._engine = engine
        self._http = http
        self._timeout = timeout
        self._allow_private = allow_private

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
            if previous and until is not None and datetime.now(UTC) < until:
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

        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "printflow-webhooks/1",
            EVENT_ID_HEADER: event_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign_all(secrets, timestamp, body),
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        # What is recorded is the status code or a short kind of error, never what the
        # receiver answered: its body is the merchant's (or an attacker's) text, not ours.
        try:
            target, extensions = await pinned_request(url, allow_private=self._allow_private)
            headers["Host"] = httpx.URL(url).netloc.decode("ascii")
            outgoing = self._http.build_request(
                "POST",
                target,
                content=body,
                headers=headers,
                timeout=self._timeout,
                extensions=extensions,
            )
            # A redirect is a failed attempt: following it could lead anywhere.
            response = await self._http.send(outgoing, follow_redirects=False)
            await response.aclose()
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}"
                if response.is_redirect:
                    error += " redirect (not followed)"
        except Refused as refused:
            error = refused.kind
            log.warning("webhook %s not sent: %s", event_id, refused)
        except httpx.HTTPError as exc:
            error = _error_kind(exc)
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
            what = f"HTTP {status_code}" if status_code is not None else (error or "no answer")
            raise ApplicationError(
                f"webhook {event_id} attempt {attempt}: {what}", type=DELIVERY_FAILED
            )
        log.info("webhook %s delivered (attempt %d, HTTP %s)", event_id, attempt, status_code)
        return DeliveryResult(outcome="delivered", attempt=attempt, status_code=status_code)

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
                    at=datetime.now(UTC),
                )
            )
            await session.commit()
        log.warning("webhook %s given up: %s", request.event_id, reason)
