"""Personalization over JSON, for shops that build their own form: the token is the credential."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.schemas import OrderPublic, PersonalizationIn
from api.services import orders, personalization

router = APIRouter(prefix="/v1/personalization", tags=["personalization"])


@router.post(
    "/{token}",
    response_model=OrderPublic,
    responses={
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
    },
)
async def complete_personalization(
    token: str,
    body: PersonalizationIn,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> OrderPublic:
    ctx = await personalization.open_link(session, token)
    state = await personalization.submit(
        session, temporal, settings.update_timeout, ctx, body.items
    )
    return await orders.render(session, state)
