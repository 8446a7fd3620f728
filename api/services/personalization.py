"""What a personalization link leads to, shared by the customer's page and the JSON endpoint.

A token is the customer's only credential. ``open_link`` turns it into the link, its order and
the items still to personalize, or refuses with the reason a customer can act on:

    NotFound  404  link_not_found           no such token
    Conflict  409  order_canceled           the merchant canceled the order
    Conflict  409  already_personalized     this link (or an earlier one) was used
    Conflict  409  personalization_closed   the order moved on without it (approved, failed …)
    Gone      410  link_expired             past its expiry, or a newer link replaced it
    Invalid   422  invalid_personalization  values that break the order's field rules

``submit`` checks the values against the same rules as the workflow (domain.personalization),
then asks the workflow: it alone decides, so two racing submissions complete the order once and
a token can only ever complete the order it was issued for.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ApiError, Conflict, Gone, NotFound
from api.schemas import PersonalizationItemPublic, PersonalizationPublic
from api.services.updates import answered, run_update
from contracts.orders import PersonalizationSubmission
from db.engine import utcnow
from db.models import Merchant, Order, PersonalizationLink
from domain.orders import ItemState, OrderState, PersonalizationStatus, RefusalCode, Status
from domain.personalization import clean_values, hash_token, pending_items, validate_values
from workflows.orders import OrderWorkflow

log = logging.getLogger("printflow.api.personalization")

# secrets.token_urlsafe(32) gives 43 characters; anything far off that shape is not a token of
# ours, and is refused before it costs a hash and a query.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,128}")

LINK_NOT_FOUND = "link_not_found"
ORDER_CANCELED = RefusalCode.ORDER_CANCELED
ALREADY_PERSONALIZED = RefusalCode.ALREADY_PERSONALIZED
PERSONALIZATION_CLOSED = "personalization_closed"
LINK_EXPIRED = "link_expired"
INVALID = RefusalCode.INVALID_PERSONALIZATION


class InvalidPersonalization(ApiError):
    """422: ``details`` maps "item_reference_id.field" to what is wrong with it."""

    status_code = 422
    code = INVALID

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("some personalization values are not valid; see details", details=errors)
        self.errors = errors


@dataclass
class LinkContext:
    link: PersonalizationLink
    order: Order
    state: OrderState
    shop_name: str
    items: list[ItemState]  # the items the customer personalizes


async def open_link(session: AsyncSession, token: str) -> LinkContext:
    """The link behind ``token`` when it can still be used; otherwise the refusal (see above)."""
    if not _TOKEN_SHAPE.fullmatch(token):
        raise _not_found()
    digest = hash_token(token)
    link = (
        await session.exec(
            select(PersonalizationLink).where(PersonalizationLink.token_hash == digest)
        )
    ).first()
    # The index finds the row; the constant-time comparison is the actual check, so no code path
    # ever decides on a token by an early-exit string comparison.
    if link is None or not hmac.compare_digest(link.token_hash.encode(), digest.encode()):
        raise _not_found()
    order = await session.get(Order, link.order_id)
    if order is None:  # cannot happen with the foreign key; answer as for an unknown link
        raise _not_found()
    state = OrderState.model_validate(order.state)
    merchant = await session.get(Merchant, order.merchant_id)
    shop = merchant.name if merchant is not None else "the shop"
    _refuse_unless_open(link, state, await _newest_seq(session, link.order_id), shop)
    return LinkContext(
        link=link, order=order, state=state, shop_name=shop, items=pending_items(state.items)
    )


def _refuse_unless_open(
    link: PersonalizationLink, state: OrderState, newest_seq: int, shop: str
) -> None:
    # Pages use these to say which order and whom to ask; the JSON caller is the shop itself.
    about = {"order_reference_id": state.order_reference_id, "shop": shop}
    if state.status is Status.CANCELED:
        raise Conflict("this order was canceled", code=ORDER_CANCELED, details=about)
    personalized = any(
        i.personalization_status is PersonalizationStatus.COMPLETED for i in state.items
    )
    if link.used_at is not None or (
        state.status is not Status.PENDING_PERSONALIZATION and personalized
    ):
        raise Conflict(
            "this order has already been personalized", code=ALREADY_PERSONALIZED, details=about
        )
    if state.status is not Status.PENDING_PERSONALIZATION:
        raise Conflict(
            f"this order no longer waits for personalization (it is {state.status.value})",
            code=PERSONALIZATION_CLOSED,
            details=about,
        )
    if link.expires_at <= utcnow() or link.seq < newest_seq:
        raise Gone(
            "this link has expired; the shop has been sent a new one",
            code=LINK_EXPIRED,
            details={**about, "expired_at": link.expires_at.isoformat()},
        )


async def _newest_seq(session: AsyncSession, order_id: str) -> int:
    seqs = await session.exec(
        select(PersonalizationLink.seq)
        .where(PersonalizationLink.order_id == order_id)
        .order_by(col(PersonalizationLink.seq).desc())
        .limit(1)
    )
    return seqs.first() or 0


def check_values(ctx: LinkContext, values: dict[str, dict[str, str]]) -> None:
    """Raises InvalidPersonalization unless ``values`` fit the link's items."""
    errors = validate_values(ctx.items, values)
    if errors:
        raise InvalidPersonalization(errors)


async def submit(
    session: AsyncSession,
    client: Client,
    patience: timedelta,
    ctx: LinkContext,
    values: dict[str, dict[str, str]],
) -> OrderState:
    """Completes the personalization through the order's workflow; the link is then used up."""
    check_values(ctx, values)
    submission = PersonalizationSubmission(
        link_id=ctx.link.id, link_seq=ctx.link.seq, values=clean_values(ctx.items, values)
    )

    async def closed() -> ApiError:
        # The workflow has closed, so the order did too; its last projection says how.
        await session.refresh(ctx.order)
        last = OrderState.model_validate(ctx.order.state)
        if last.status is Status.CANCELED:
            return Conflict("this order was canceled", code=ORDER_CANCELED)
        return Conflict("this order is closed", code=PERSONALIZATION_CLOSED)

    answer = await run_update(
        client,
        ctx.order.id,
        OrderWorkflow.complete_personalization,
        submission,
        patience=patience,
        on_closed=closed,
        on_refusal=_refusal,
    )
    state = await answered(session, ctx.order, answer)
    await session.exec(
        update(PersonalizationLink)
        .where(
            col(PersonalizationLink.id) == ctx.link.id,
            col(PersonalizationLink.used_at).is_(None),
        )
        .values(used_at=utcnow())
    )
    await session.commit()
    log.info("order %s personalized through link %s", ctx.order.id, ctx.link.id)
    return state


def _refusal(code: str, message: str, details: Any) -> ApiError:
    """The workflow's refusal as the API error a customer (or a shop's code) can act on."""
    if code == INVALID:
        return InvalidPersonalization(dict(details) if isinstance(details, dict) else {})
    if code in (RefusalCode.LINK_SUPERSEDED, LINK_EXPIRED):
        return Gone("this link has expired; the shop has been sent a new one", code=LINK_EXPIRED)
    return Conflict(message, code=code)


async def known_token(session: AsyncSession, token: str) -> bool:
    """Whether ``token`` is a link's (expired or used ones too): the path's credential."""
    if not _TOKEN_SHAPE.fullmatch(token):
        return False
    digest = hash_token(token)
    found = await session.exec(
        select(PersonalizationLink.token_hash).where(PersonalizationLink.token_hash == digest)
    )
    return found.first() is not None


def _not_found() -> NotFound:
    return NotFound("no personalization link with this token", code=LINK_NOT_FOUND)


def customer_view(ctx: LinkContext, state: OrderState | None = None) -> PersonalizationPublic:
    """What the customer's page shows for ``ctx`` (with ``state``'s values once submitted):
    the shop, the order's reference, the link's expiry and the items to personalize with their
    fields and limits. Never the address, e-mail, metadata or anything else of the order."""
    wanted = {i.item_reference_id for i in ctx.items}
    items = [i for i in (state or ctx.state).items if i.item_reference_id in wanted]
    return PersonalizationPublic(
        shop_name=ctx.shop_name,
        order_reference_id=ctx.state.order_reference_id,
        expires_at=ctx.link.expires_at,
        items=[
            PersonalizationItemPublic(
                item_reference_id=i.item_reference_id,
                product_uid=i.product_uid,
                quantity=i.quantity,
                fields=i.personalization.fields if i.personalization else [],
                status=i.personalization_status,
                values=i.personalization_values,
            )
            for i in items
        ],
    )
