"""Support cases: the merchant's endpoints (``X-API-Key``) and the support team's
(``X-Agent-Token``). Every change answers with the case as it now is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import (
    AgentDep,
    CaseStarterDep,
    IdempotencyKeyDep,
    IdempotencyRefDep,
    MerchantDep,
    SessionDep,
    SettingsDep,
    SupportDep,
    TemporalDep,
)
from api.schemas import CasePage, CasePublic
from api.services import cases
from domain.cases import (
    AgentMessageCreate,
    AssignRequest,
    CaseCreate,
    CaseStatus,
    MessageCreate,
    Queue,
    SlaState,
)

router = APIRouter(prefix="/v1/support/cases", tags=["support"])
agent_router = APIRouter(prefix="/v1/agent/cases", tags=["support team"])

_WRITE: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such case (another merchant's case is a 404 too)"},
    409: {"description": "case_closed (or case_resolved): nothing changed"},
    503: {
        "description": "case_busy: the case did not answer within UPDATE_TIMEOUT; the change "
        "may still happen (GET tells). Retry with the same Idempotency-Key to apply it once."
    },
}


@router.post(
    "",
    status_code=201,
    response_model=CasePublic,
    responses={
        403: {"description": "not_in_plan: the plan does not include this channel"},
        422: {"description": "invalid body; unknown_order or order_not_shipped for the order_id"},
    },
)
async def create_case(
    body: CaseCreate,
    merchant: MerchantDep,
    session: SessionDep,
    starter: CaseStarterDep,
    settings: SettingsDep,
    support: SupportDep,
    ref: IdempotencyRefDep,
) -> CasePublic:
    """Opens a case; its response clock starts now (see README, "Support cases")."""
    return await cases.create_case(session, starter, settings, support, merchant, body, ref)


@router.get("", response_model=CasePage)
async def list_cases(
    merchant: MerchantDep,
    session: SessionDep,
    status: CaseStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> CasePage:
    """The merchant's cases, newest first."""
    return await cases.list_merchant_cases(
        session, merchant, status=status, limit=limit, cursor=cursor
    )


@router.get("/{case_id}", response_model=CasePublic)
async def get_case(case_id: str, merchant: MerchantDep, session: SessionDep) -> CasePublic:
    row = await cases.case_row(session, case_id, merchant)
    return await cases.render(session, row)


@router.post("/{case_id}/messages", response_model=CasePublic, responses=_WRITE)
async def post_message(
    case_id: str,
    body: MessageCreate,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> CasePublic:
    """Adds the merchant's message; a case waiting on them or resolved opens again."""
    row = await cases.case_row(session, case_id, merchant)
    return await cases.merchant_message(
        session,
        temporal,
        settings,
        row,
        body.body,
        [str(url) for url in body.attachments],
        idempotency_key,
    )


@router.post("/{case_id}/close", response_model=CasePublic, responses=_WRITE)
async def close_case(
    case_id: str,
    merchant: MerchantDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> CasePublic:
    row = await cases.case_row(session, case_id, merchant)
    return await cases.close_case(session, temporal, settings, row, idempotency_key)


# ---------------------------------------------------------------------------- support team


@agent_router.get("", response_model=CasePage)
async def agent_queue(
    agent: AgentDep,
    session: SessionDep,
    queue: Queue | None = None,
    sla_state: SlaState | None = None,
    status: CaseStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> CasePage:
    """Every case not closed (or those of ``status``), soonest due first; those that owe no
    answer follow, oldest first."""
    return await cases.list_queue(
        session, queue=queue, sla_state=sla_state, status=status, limit=limit, cursor=cursor
    )


@agent_router.get("/{case_id}", response_model=CasePublic)
async def agent_case(case_id: str, agent: AgentDep, session: SessionDep) -> CasePublic:
    row = await cases.case_row(session, case_id, None)
    return await cases.render(session, row)


@agent_router.post("/{case_id}/messages", response_model=CasePublic, responses=_WRITE)
async def agent_message(
    case_id: str,
    body: AgentMessageCreate,
    agent: AgentDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> CasePublic:
    """Answers the merchant (e-mailed to their support address). ``waiting_on_merchant``
    pauses the clock until they write back."""
    row = await cases.case_row(session, case_id, None)
    return await cases.agent_message(
        session,
        temporal,
        settings,
        row,
        agent,
        body.body,
        body.waiting_on_merchant,
        idempotency_key,
    )


@agent_router.post("/{case_id}/assign", response_model=CasePublic, responses=_WRITE)
async def assign_case(
    case_id: str,
    body: AssignRequest,
    agent: AgentDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> CasePublic:
    row = await cases.case_row(session, case_id, None)
    return await cases.assign(
        session, temporal, settings, row, agent, body.agent_id, idempotency_key
    )


@agent_router.post("/{case_id}/resolve", response_model=CasePublic, responses=_WRITE)
async def resolve_case(
    case_id: str,
    agent: AgentDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyDep,
) -> CasePublic:
    row = await cases.case_row(session, case_id, None)
    return await cases.resolve(session, temporal, settings, row, agent, idempotency_key)
