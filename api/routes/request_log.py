"""The merchant's failed requests (``X-API-Key``): ``GET /v1/requests/{request_id}`` tells what
a request answered 400 or above was, by the ``X-Request-Id`` of its answer (kept 30 days)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import MerchantDep, SessionDep
from api.schemas import RequestLogEntry
from api.services import request_log

router = APIRouter(prefix="/v1/requests", tags=["support"])


@router.get(
    "/{request_id}",
    response_model=RequestLogEntry,
    responses={404: {"description": "no failed request of yours with this id (30 days)"}},
)
async def get_request(
    request_id: str, merchant: MerchantDep, session: SessionDep
) -> RequestLogEntry:
    return await request_log.request_for(session, merchant.id, request_id)
