"""Facilities report back: ``POST /v1/production/events`` with the facility's bearer token."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import FacilityDep, SessionDep, TemporalDep
from api.schemas import EventAccepted
from api.services import production
from domain.orders import ProductionEventIn

router = APIRouter(prefix="/v1/production", tags=["production"])


@router.post(
    "/events",
    status_code=202,
    response_model=EventAccepted,
    responses={
        401: {"description": "missing or unknown facility token"},
        404: {"description": "no such order at this facility"},
        409: {"description": "event_id already used for another order or facility"},
        503: {"description": "not recorded; retry with the same event_id"},
    },
)
async def report_event(
    facility: FacilityDep,
    body: ProductionEventIn,
    session: SessionDep,
    temporal: TemporalDep,
) -> EventAccepted:
    return await production.record_event(session, temporal, facility, body)
