"""Customer contacts (``X-API-Key``): a merchant writes to the customer of one of their orders,
reads the thread and replies. See docs/customer-contacts.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from api.deps import (
    ContactStarterDep,
    IdempotencyKeyDep,
    IdempotencyRefDep,
    MerchantDep,
    SessionDep,
    SettingsDep,
    SupportDep,
    TemporalDep,
)
from api.schemas import ContactPage, ContactPublic
from api.services import contacts
from domain.contacts import ContactCreate, ContactMessageCreate, ContactStatus
from domain.support_ids import InvalidSupportId

router = APIRouter(prefix="/v1/customer-contacts", tags=["customer contacts"])


@router.post(
    "",
    status_code=201,
    response_model=ContactPublic,
    responses={
        404: {"description": "order_not_found: no order of yours has this Support ID"},
        409: {
            "description": "reason_does_not_fit (details.reasons_that_fit) or "
            "customer_cancellation: nothing was sent"
        },
        422: {
            "description": "validation_error (a Support ID starts with PF-), reason_not_allowed "
            "(details.allowed_reasons), substitute_not_allowed"
        },
    },
)
async def create_contact(
    body: ContactCreate,
    merchant: MerchantDep,
    session: SessionDep,
    starter: ContactStarterDep,
    settings: SettingsDep,
    support: SupportDep,
    ref: IdempotencyRefDep,
) -> ContactPublic:
    """Writes to the customer of the order with ``support_id``; the customer is e-mailed at the
    order's shipping e-mail with the message and a link to reply."""
    return await contacts.create_contact(session, starter, settings, support, merchant, body, ref)


@router.get("", response_model=ContactPage)
async def list_contacts(
    merchant: MerchantDep,
    session: SessionDep,
    support_id: str | None = None,
    status: ContactStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> ContactPage:
    """The merchant's contacts, newest first."""
    try:
        return await contacts.list_contacts(
            session, merchant, support_id=support_id, status=status, limit=limit, cursor=cursor
        )
    except InvalidSupportId as err:
        raise RequestValidationError(
            [{"loc": ("query", "support_id"), "msg": str(err), "type": "value_error"}]
        ) from None


@router.get("/{contact_id}", response_model=ContactPublic)
async def get_contact(contact_id: str, merchant: MerchantDep, session: SessionDep) -> ContactPublic:
    row = await contacts.contact_row(session, contact_id, merchant)
    return await contacts.render(session, row)


_WRITE: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such contact (another merchant's is a 404 too)"},
    409: {"description": "contact_closed, or customer_cancellation: nothing changed"},
    422: {"description": "validation_error or substitute_not_allowed"},
    503: {
        "description": "contact_busy: the contact did not answer within UPDATE_TIMEOUT; retry "
        "with the same Idempotency-Key"
    },
}


@router.post("/{contact_id}/messages", response_model=ContactPublic, responses=_WRITE)
async def post_message(
    contact_id: str,
    body: ContactMessageCreate,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> ContactPublic:
    """The merchant's reply: e-mailed to the customer; it stops a running reply clock."""
    row = await contacts.contact_row(session, contact_id, merchant)
    return await contacts.merchant_reply(
        session, temporal, settings, row, body.body, idempotency_key
    )
