"""What the support console (``/support``) needs beyond the agents' API: signed sessions, CSRF
tokens tied to them, and the queue and case as a person reads them (merchant names, the due
time, the linked order, who is assigned).

A session is a signed cookie value (``api.services.sessions``), never the agent's token. Every
request checks the signature, the expiry and that the agent is still active, so deactivating an
agent ends their sessions at once. The sign-in form has its own short session (agent ``-``) so
that it, too, carries a CSRF token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.schemas import CasePublic
from api.services import cases
from api.services.credentials import hash_credential
from db.models import Agent, Merchant, Order, SupportCase
from domain.cases import CaseStatus, CaseSummary, Queue, SlaState

SESSION_LIFETIME = timedelta(hours=12)
LOGIN_LIFETIME = timedelta(hours=1)
ANONYMOUS = "-"
PAGE_SIZE = 25


# ---------------------------------------------------------------------------- agents


async def agent_by_token(session: AsyncSession, token: str) -> Agent | None:
    """The active agent with this token: the lookup ``X-Agent-Token`` uses (by its sha256)."""
    token = token.strip()
    if not token:
        return None
    wanted = hash_credential(token)
    agent = (await session.exec(select(Agent).where(Agent.token_hash == wanted))).first()
    if agent is None or not hmac.compare_digest(agent.token_hash, wanted) or not agent.active:
        return None
    return agent


async def active_agent(session: AsyncSession, agent_id: str) -> Agent | None:
    if agent_id == ANONYMOUS:
        return None
    agent = await session.get(Agent, agent_id)
    return agent if agent is not None and agent.active else None


# ---------------------------------------------------------------------------- the queue


@dataclass(frozen=True)
class QueueRow:
    case: CaseSummary
    merchant_name: str
    plan: str
    due_at: datetime | None
    assignee_name: str | None


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None


async def queue(
    session: AsyncSession,
    agent: Agent,
    *,
    queue: Queue | None,
    mine: bool,
    sla_state: SlaState | None,
    cursor: str | None,
    limit: int = PAGE_SIZE,
) -> QueuePage:
    """``GET /v1/agent/cases`` (soonest due first), with what a row shows besides the case."""
    page = await cases.list_queue(
        session,
        queue=queue,
        sla_state=sla_state,
        status=None,
        limit=limit,
        cursor=cursor,
        assignee_id=agent.id if mine else None,
    )
    ids = [c.id for c in page.data]
    extra: dict[str, tuple[str, str, datetime | None]] = {}
    if ids:
        found = await session.exec(
            select(SupportCase.id, Merchant.name, Merchant.plan, SupportCase.sla_due_at)
            .join(Merchant, col(Merchant.id) == col(SupportCase.merchant_id))
            .where(col(SupportCase.id).in_(ids))
        )
        extra = {row[0]: (row[1], row[2], row[3]) for row in found.all()}
    names = await _agent_names(session, {c.assignee for c in page.data if c.assignee})
    rows = []
    for case in page.data:
        merchant_name, plan, due_at = extra.get(case.id, ("?", "?", None))
        rows.append(
            QueueRow(
                case=case,
                merchant_name=merchant_name,
                plan=plan,
                due_at=_utc(due_at),
                assignee_name=names.get(case.assignee or ""),
            )
        )
    return QueuePage(rows, page.next_cursor)


async def _agent_names(session: AsyncSession, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    found = await session.exec(select(Agent.id, Agent.name).where(col(Agent.id).in_(ids)))
    return dict(found.all())


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# ---------------------------------------------------------------------------- one case


@dataclass(frozen=True)
class LinkedOrder:
    id: str
    reference: str
    status: str


@dataclass(frozen=True)
class CaseView:
    case: CasePublic
    merchant_name: str
    merchant_email: str
    plan: str
    due_at: datetime | None
    assignee_name: str | None
    order: LinkedOrder | None
    closed: bool


async def case_view(session: AsyncSession, case_id: str) -> CaseView:
    """The case as the agents' API shows it, plus what the page says about it; 404 if none."""
    row = await cases.case_row(session, case_id, None)
    return await view_of(session, row)


async def view_of(session: AsyncSession, row: SupportCase) -> CaseView:
    public = await cases.render(session, row)
    merchant = await session.get(Merchant, row.merchant_id)
    names = await _agent_names(session, {public.assignee} if public.assignee else set())
    order = None
    if row.order_id is not None:
        found = await session.get(Order, row.order_id)
        if found is not None and found.merchant_id == row.merchant_id:
            order = LinkedOrder(found.id, found.order_reference_id, found.status)
        else:
            order = LinkedOrder(row.order_id, "", "unknown")
    return CaseView(
        case=public,
        merchant_name=merchant.name if merchant else row.merchant_id,
        merchant_email=merchant.support_email if merchant else "",
        plan=merchant.plan if merchant else "",
        due_at=_utc(row.sla_due_at),
        assignee_name=names.get(public.assignee or ""),
        order=order,
        closed=public.status is CaseStatus.CLOSED,
    )
