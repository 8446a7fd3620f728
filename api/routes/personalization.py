"""Personalization over JSON, for shops that build their own form: the token is the credential,
and the answers hold only what the customer's page shows (``PersonalizationPublic``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.schemas import PersonalizationIn, PersonalizationPublic
from api.services import personalization

router = APIRouter(prefix="/v1/personalization", tags=["personalization"])


_REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no link with this token (`link_not_found`)"},
    409: {
        "description": "already personalized (`already_personalized`), the order was "
        "canceled (`order_canceled`) or moved on without it (`personalization_closed`)"
    },
    410: {"description": "the link expired or a newer one replaced it (`link_expired`)"},
    422: {
        "description": "`validation_error` (the body's shape) or `invalid_personalization` "
        '(details: {"item_reference_id.field": "what is wrong"})'
    },
}


@router.get("/{token}", response_model=PersonalizationPublic, responses=_REFUSALS)
async def read_personalization(token: str, session: SessionDep) -> PersonalizationPublic:
    """What the link asks for, as the customer's page shows it."""
    return personalization.customer_view(await personalization.open_link(session, token))


@router.post("/{token}", response_model=PersonalizationPublic, responses=_REFUSALS)
async def complete_personalization(
    token: str,
    body: PersonalizationIn,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> PersonalizationPublic:
    ctx = await personalization.open_link(session, token)
    state = await personalization.submit(
        session, temporal, settings.update_timeout, ctx, body.items
    )
    return personalization.customer_view(ctx, state)
