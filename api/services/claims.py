"""Reprints: a reorder creates a new order linked to the original, and a claim with the evidence.

The new order is an ordinary order (same create path, its own workflow) whose reference is the
original's with ``-R{n}`` appended and whose ``reorder_of`` names the original; the claim row
links both ways, so support finds it by either order. Retrying the same reorder request returns
the same claim and order (200) instead of printing twice.
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import ApiError, Conflict, NotFound
from api.pagination import newest_first
from api.relay import OrderStarter
from api.schemas import ClaimPage, ClaimPublic, ReorderCreated, ReorderRequest
from api.services import orders
from db.engine import utcnow
from db.models import Claim, Merchant, Order
from domain.facilities import Facilities
from domain.orders import Action, OrderCreate, OrderState, PersonalizationStatus, refusal
from runtime.settings import Settings

REFERENCE_MAX = 64  # OrderCreate.order_reference_id


def _invalid(field: str, message: str) -> RequestValidationError:
    # Rendered by the API's validation handler: the same 422 envelope as a malformed body.
    return RequestValidationError(
        [{"loc": ("body", field), "msg": message, "type": "value_error", "input": None}]
    )


def _reference(original: str, n: int) -> str:
    suffix = f"-R{n}"
    return original[: REFERENCE_MAX - len(suffix)] + suffix


def _same_request(claim: Claim, body: ReorderRequest, items: list[str]) -> bool:
    return (
        claim.reason == body.reason
        and claim.description == body.description
        and claim.photo_urls == [str(u) for u in body.photo_urls]
        and sorted(claim.item_reference_ids) == sorted(items)
    )


async def reorder(
    session: AsyncSession,
    starter: OrderStarter,
    settings: Settings,
    facilities: Facilities,
    merchant: Merchant,
    order_id: str,
    body: ReorderRequest,
) -> tuple[ReorderCreated, bool]:
    """Creates the reprint and its claim; returns (result, created)."""
    row = await orders.get_row(session, merchant, order_id)
    state = OrderState.model_validate(row.state)
    why = refusal(Action.REORDER, state.status, state.cutoff_at, utcnow(), state.hold)
    if why is not None:
        raise Conflict(why.message, code=why.code)
    original = OrderCreate.model_validate(row.workflow_input["order"])
    # Captured now: a lost create race rolls the session back and expires ``row``.
    original_id, original_ref = row.id, row.order_reference_id
    known = [i.item_reference_id for i in original.items]
    items = body.item_reference_ids or known
    unknown = [i for i in items if i not in known]
    if unknown:
        raise _invalid(
            "item_reference_ids",
            f"not items of order {original_id}: {', '.join(unknown)}; it has {', '.join(known)}",
        )

    # The reprint is printed as the original was: with the customer's values (or, where the
    # merchant went ahead without them, without), never waiting for the customer again.
    carried = {
        i.item_reference_id: i.personalization_values or {}
        for i in state.items
        if i.personalization_status
        in (PersonalizationStatus.COMPLETED, PersonalizationStatus.SKIPPED)
    }

    # A retry of the same request: the same claim and reprint, not a second one.
    for claim in await session.exec(select(Claim).where(Claim.original_order_id == original_id)):
        if _same_request(claim, body, items):
            return await _existing(session, merchant, claim), False

    # References -R1, -R2 … are walked from the start by every request, so identical requests
    # (retries, or sent concurrently) meet at the same reprint: the first reference that is
    # free or already holds exactly this reprint. A reference taken by a different order is
    # skipped; a different claim on the same reprint body moves on too (see _claim_for).
    taken = (
        await session.exec(
            select(func.count()).select_from(Claim).where(Claim.original_order_id == original_id)
        )
    ).one()
    for n in range(1, taken + 20):
        reference = _reference(original_ref, n)
        new_body = OrderCreate.model_validate(
            {
                **original.model_dump(mode="json"),
                "order_reference_id": reference,
                "approval": "auto",
                "items": [
                    i.model_dump(mode="json")
                    for i in original.items
                    if i.item_reference_id in items
                ],
            }
        )
        holder = (
            await session.exec(
                select(Order.request_hash).where(
                    Order.merchant_id == merchant.id, Order.order_reference_id == reference
                )
            )
        ).first()
        if holder is not None and holder != orders.request_hash(new_body):
            continue  # another claim's reprint, or the merchant's own order
        if merchant not in session:
            session.add(merchant)  # create_order detaches it; a second attempt needs it back
        try:
            new_order, _ = await orders.create_order(
                session,
                starter,
                settings,
                facilities,
                merchant,
                new_body,
                reorder_of=original_id,
                personalization_values=carried,
            )
        except Conflict as err:
            if err.code == "order_reference_conflict":
                continue  # that reference is taken (another claim, or the merchant's own order)
            raise
        if new_order.reorder_of != original_id:
            continue  # the merchant's own order that happens to carry this reference
        mine, created = await _claim_for(session, merchant, original_id, new_order.id, body, items)
        if mine is None:
            continue  # a concurrent, different claim got this reprint; take the next reference
        public = await _claim_public(session, [mine])
        if not created:
            new_order = await orders.get_order(session, merchant, new_order.id)
        return ReorderCreated(order=new_order, claim=public[0]), created
    raise ApiError("could not find a free reference for the reprint", code="reorder_failed")


async def _claim_for(
    session: AsyncSession,
    merchant: Merchant,
    original_id: str,
    new_order_id: str,
    body: ReorderRequest,
    items: list[str],
) -> tuple[Claim | None, bool]:
    """The claim of this reprint: ours (inserted now, or by an identical concurrent request),
    or None when a different claim owns the reprint. One claim per new order: the claim id is
    derived from the order id, so the database rejects a second one."""
    claim_id = "clm_" + new_order_id.removeprefix("ord_")
    claim = Claim(
        id=claim_id,
        merchant_id=merchant.id,
        original_order_id=original_id,
        new_order_id=new_order_id,
        reason=body.reason,
        description=body.description,
        photo_urls=[str(u) for u in body.photo_urls],
        item_reference_ids=items,
        created_at=utcnow(),
    )
    session.add(claim)
    try:
        await session.commit()
        return claim, True
    except IntegrityError:
        await session.rollback()
    existing = await session.get(Claim, claim_id)
    if existing is not None and _same_request(existing, body, items):
        return existing, False
    return None, False


async def _existing(session: AsyncSession, merchant: Merchant, claim: Claim) -> ReorderCreated:
    order = await orders.get_order(session, merchant, claim.new_order_id)
    return ReorderCreated(order=order, claim=(await _claim_public(session, [claim]))[0])


async def _claim_public(session: AsyncSession, claims: list[Claim]) -> list[ClaimPublic]:
    ids = {c.original_order_id for c in claims} | {c.new_order_id for c in claims}
    refs: dict[str, str] = {}
    if ids:
        rows = await session.exec(
            select(Order.id, Order.order_reference_id).where(col(Order.id).in_(ids))
        )
        refs = {oid: ref for oid, ref in rows}
    return [
        ClaimPublic(
            id=c.id,
            original_order_id=c.original_order_id,
            original_order_reference_id=refs.get(c.original_order_id, ""),
            new_order_id=c.new_order_id,
            new_order_reference_id=refs.get(c.new_order_id, ""),
            reason=c.reason,
            description=c.description,
            photo_urls=list(c.photo_urls),
            item_reference_ids=list(c.item_reference_ids),
            created_at=c.created_at,
        )
        for c in claims
    ]


async def get_claim(session: AsyncSession, merchant: Merchant, claim_id: str) -> ClaimPublic:
    claim = await session.get(Claim, claim_id)
    if claim is None or claim.merchant_id != merchant.id:
        raise NotFound(f"no claim {claim_id}", code="claim_not_found")
    return (await _claim_public(session, [claim]))[0]


async def list_claims(
    session: AsyncSession,
    merchant: Merchant,
    *,
    order_id: str | None,
    order_reference_id: str | None,
    limit: int,
    cursor: str | None,
) -> ClaimPage:
    """Newest first; ``order_id`` / ``order_reference_id`` match the original or the reprint."""
    query = select(Claim).where(Claim.merchant_id == merchant.id)
    for wanted in (order_id, await _order_id_of(session, merchant, order_reference_id)):
        if wanted is not None:
            query = query.where(
                or_(col(Claim.original_order_id) == wanted, col(Claim.new_order_id) == wanted)
            )
    page, next_cursor = await newest_first(session, query, Claim, limit=limit, cursor=cursor)
    return ClaimPage(data=await _claim_public(session, page), next_cursor=next_cursor)


async def _order_id_of(
    session: AsyncSession, merchant: Merchant, reference: str | None
) -> str | None:
    if reference is None:
        return None
    found = (
        await session.exec(
            select(Order.id).where(
                Order.merchant_id == merchant.id, Order.order_reference_id == reference
            )
        )
    ).first()
    # An unknown reference matches no claim (rather than every claim).
    return found or "-"
