"""Personalization links: create one, e-mail it to the merchant, announce it on the webhook.

The token exists only in this activity's memory, in the e-mail (and the webhook) that carries it,
and in the customer's browser: the database keeps its sha256, and the workflow learns only the
link's id. A token is 256 bits, so a fast hash is enough and lets the API look it up.

The token is derived from the link's id with the link secret (``link_token``: HMAC-SHA256 of the
id under ``PRINTFLOW_LINK_SECRET``), so it is the same however often it is made: the link for
``(order_id, seq)`` is created once (its id random), and a retry that finds it still unused
e-mails the *same* link again. An attempt can send the e-mail and still fail (a time-out after
the send, the webhook's tries, a worker that dies); the merchant may already have forwarded the
first e-mail, and that link keeps working. Only a worker with another secret (the secret was
changed, or none is set and the retry runs in another process) makes a new token, and then the
row takes its hash: the link that goes out is always the one that works. The database alone
cannot make a token: it holds ids and hashes, never the secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities.mail import send_template
from contracts.orders import IssueLink, LinkIssued
from db.engine import utcnow
from db.models import Order, PersonalizationLink
from domain.orders import ItemState
from domain.personalization import describe_field, hash_token
from integrations.mail import Mailer

log = logging.getLogger("printflow.personalization")

SECRET_BYTES = 32  # a random secret of this process, when none is set


def link_token(secret: bytes, link_id: str) -> str:
    """The token of link ``link_id``: 256 bits of HMAC-SHA256 under ``secret``, base64url."""
    digest = hmac.new(secret, f"personalization-link:{link_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


WEBHOOK_ATTEMPTS = 3
WEBHOOK_BACKOFF_SECONDS = 0.5


def link_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/p/{token}"


def format_expiry(when: datetime) -> str:
    """E.g. "Tuesday, 9 June 2026, 14:05 UTC": unambiguous for merchants in any country."""
    utc = when.astimezone(UTC)
    return f"{utc:%A}, {utc.day} {utc:%B %Y, %H:%M} UTC"


def link_subject(reference: str) -> str:
    return f"Order {reference}: personalization needed — link to forward to your customer"


class LinkWebhooks(Protocol):
    """Tells the merchant's webhook about a new link (implemented by the webhooks module)."""

    async def link_issued(
        self, *, merchant_id: str, order_id: str, url: str, expires_at: datetime
    ) -> None: ...


class PersonalizationActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        mailer: Mailer,
        public_base_url: str,
        webhooks: LinkWebhooks | None = None,
        *,
        link_secret: bytes | None = None,
    ) -> None:
        """``link_secret`` (``PRINTFLOW_LINK_SECRET``) makes the tokens; None: a random secret
        of this process, so a retry in another process sends a new link."""
        self._secret = link_secret or secrets.token_bytes(SECRET_BYTES)
        self._engine = engine
        self._mailer = mailer
        self._public_base_url = public_base_url
        self._webhooks = webhooks

    @activity.defn
    async def issue_personalization_link(self, req: IssueLink) -> LinkIssued:
        link, fresh = await self._store(req)
        token = link_token(self._secret, link.id)
        issued = LinkIssued(link_id=link.id, seq=link.seq, expires_at=link.expires_at)
        if not fresh:
            # The customer used this link while an earlier attempt of ours was still finishing;
            # a new e-mail would only confuse the merchant.
            _log("link %s of order %s was used already; nothing to send", link.id, req.order_id)
            return issued

        url = link_url(self._public_base_url, token)
        message_id = await send_template(
            self._mailer,
            req.support_email,
            link_subject(req.order_reference_id),
            "personalization_link",
            reference=req.order_reference_id,
            order_id=req.order_id,
            support_id=req.support_id or await self._support_id(req.order_id),
            url=url,
            expires=format_expiry(link.expires_at),
            seq=req.seq,
            items=[_item_context(item) for item in req.items],
        )
        # The id, never the URL: logs must not carry the token.
        _log(
            "e-mailed personalization link %s (number %d) of order %s as %s",
            link.id,
            link.seq,
            req.order_id,
            message_id,
        )
        if self._webhooks is not None:
            await self._announce(req, link, url)
        return issued

    async def _support_id(self, order_id: str) -> str | None:
        """The Support ID of an order started before they existed (its row has one)."""
        async with self._engine.connect() as conn:
            return await conn.scalar(select(Order.support_id).where(Order.id == order_id))

    async def _announce(self, req: IssueLink, link: PersonalizationLink, url: str) -> None:
        """Tells the webhook, trying a few times; never fails the activity.

        The e-mail is out, and the merchant may have forwarded it already: failing now would
        make Temporal retry, and the retry would e-mail the link again (the same link, unless
        the retry runs in a worker with another secret).
        """
        assert self._webhooks is not None
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                await self._webhooks.link_issued(
                    merchant_id=req.merchant_id,
                    order_id=req.order_id,
                    url=url,
                    expires_at=link.expires_at,
                )
                return
            except Exception as err:  # whatever it was, the e-mail stands
                if attempt == WEBHOOK_ATTEMPTS:
                    # The error's type only: its text could quote the URL, and so the token.
                    _log(
                        "webhook for link %s of order %s failed %d times (%s); e-mail sent",
                        link.id,
                        req.order_id,
                        attempt,
                        type(err).__name__,
                        level=logging.ERROR,
                    )
                    return
                await asyncio.sleep(WEBHOOK_BACKOFF_SECONDS * attempt)

    async def _store(self, req: IssueLink) -> tuple[PersonalizationLink, bool]:
        """The link row for (order, seq), carrying the hash of its token; False if it was
        used already."""
        # Two rounds at most: a concurrent attempt of this same activity may insert the row
        # between our look-up and our insert; the second round then reads that row.
        for _ in range(2):
            async with AsyncSession(self._engine, expire_on_commit=False) as session:
                link = (
                    await session.exec(
                        select(PersonalizationLink).where(
                            PersonalizationLink.order_id == req.order_id,
                            PersonalizationLink.seq == req.seq,
                        )
                    )
                ).first()
                if link is not None and link.used_at is not None:
                    return link, False
                if link is None:
                    link_id = "lnk_" + uuid.uuid4().hex
                    link = PersonalizationLink(
                        id=link_id,
                        order_id=req.order_id,
                        seq=req.seq,
                        token_hash=hash_token(link_token(self._secret, link_id)),
                        expires_at=req.expires_at,
                        created_at=utcnow(),
                    )
                    session.add(link)
                else:
                    token_hash = hash_token(link_token(self._secret, link.id))
                    if (link.token_hash, link.expires_at) == (token_hash, req.expires_at):
                        return link, True  # a retry: the same link goes out again
                    # Made under another secret: this token is the one that goes out now.
                    link.token_hash = token_hash
                    link.expires_at = req.expires_at
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue
                return link, True
        raise RuntimeError(f"could not store link {req.seq} of order {req.order_id}; retrying")


def _item_context(item: ItemState) -> dict[str, Any]:
    fields = item.personalization.fields if item.personalization else []
    return {
        "item_reference_id": item.item_reference_id,
        "product_uid": item.product_uid,
        "quantity": item.quantity,
        "fields": [{"label": f.label, "describe": describe_field(f)} for f in fields],
    }


def _log(message: str, *args: Any, level: int = logging.INFO) -> None:
    # activity.logger adds the workflow and activity ids, but needs an activity context; the
    # method is also called directly (tests, tools), where a plain logger does.
    logger = activity.logger if activity.in_activity() else log
    logger.log(level, message, *args)
