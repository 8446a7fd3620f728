"""What the support case endpoints do: create (never waiting for Temporal), reads from the read
model, and every change as an Update of the case's workflow.

Create checks what the merchant may ask for (``not_in_plan``), that a parcel complaint is about
one of the merchant's shipped orders, and keeps of ``request_ids`` only the merchant's own
failed requests (others are dropped: see README, "Support cases"). The case, its first message
and the start of its workflow commit in one transaction, and nothing after the commit can fail
the answer; the case keeps the request's Idempotency-Key (hashed with the merchant's key), so
a create that runs again answers the case the first run made. The relay (``api.relay``) starts it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ApiError, Conflict, Forbidden, NotFound
from api.pagination import _decode, _encode, newest_first
from api.relay import CaseStarter, start_operation
from api.schemas import CaseMessagePublic, CasePage, CasePublic, RequestLogEntry
from api.services.request_log import requests_for
from api.services.updates import applied, run_update, update_id
from contracts.cases import (
    AgentReply,
    Assignment,
    CaseInput,
    Closing,
    MerchantMessage,
    Resolution,
    case_task_summary,
)
from contracts.updates import message_id
from db.engine import utcnow
from db.models import (
    Agent,
    Merchant,
    Order,
    SupportCase,
    SupportCaseMessage,
    SupportCaseStart,
)
from domain.cases import (
    CaseCreate,
    CaseState,
    CaseStatus,
    CaseType,
    Queue,
    SlaState,
    case_summary,
    channel_allowed,
    new_case_state,
    priority_for,
    rules_for,
    target_key,
)
from domain.orders import OrderState, Status
from domain.support import INCLUDES, SupportConfig, plan_named
from runtime.settings import Settings
from workflows.cases import SupportCaseWorkflow

FIRST_NUMBER = 1001
NUMBER_ATTEMPTS = 5
# An order has shipped once a facility reported a package (delivered and returned ones had).
SHIPPED = frozenset({Status.SHIPPED, Status.DELIVERED, Status.RETURNED})


class Invalid(ApiError):
    """A body that is well-formed but refers to something it may not (422)."""

    status_code = 422


# ---------------------------------------------------------------------------- create


async def create_case(
    session: AsyncSession,
    starter: CaseStarter,
    settings: Settings,
    support: SupportConfig,
    merchant: Merchant,
    body: CaseCreate,
    idempotency_ref: str | None = None,
) -> CasePublic:
    made = await _made_by(session, merchant, idempotency_ref)
    if made is not None:
        return made
    plan = plan_named(merchant.plan)
    if not channel_allowed(plan, body.channel):
        raise Forbidden(
            f"the {plan.value} plan does not include {body.channel.value} support; "
            "tickets and chat are in every plan, a phone callback in premium",
            code="not_in_plan",
            details={"plan": plan.value, "channel": body.channel.value},
        )
    if body.order_id is not None:
        await _check_order(session, merchant, body)
    request_ids = await _known_request_ids(session, merchant.id, body.request_ids)
    requests = await _requests(session, merchant.id, request_ids)  # read before the commit
    csm = await _csm(session, merchant)
    session.expunge(merchant)  # a lost number race rolls back; the merchant must stay loaded

    created_at = utcnow()
    key = target_key(body.channel, priority_for(plan))
    rules = rules_for(support, key, created_at.date())
    for attempt in range(NUMBER_ATTEMPTS):
        case_id = "case_" + uuid.uuid4().hex
        number = await _next_number(session)
        state = new_case_state(
            case_id=case_id,
            number=number,
            merchant_id=merchant.id,
            plan=plan,
            csm_agent_id=csm.id if csm else None,
            body=body,
            rules=rules,
            created_at=created_at,
        )
        inp = CaseInput(
            case=state,
            rules=rules,
            plan=plan,
            merchant_name=merchant.name,
            merchant_email=merchant.support_email,
            csm_email=csm.email if csm else None,
        )
        message = SupportCaseMessage(
            id=_message_id(),
            case_id=case_id,
            author_kind="merchant",
            author_id=merchant.id,
            body=body.description,
            attachments=[str(url) for url in body.attachments],
            created_at=created_at,
        )
        row = _row(state, inp, body, request_ids)
        row.idempotency_ref = idempotency_ref
        session.add(row)
        session.add(
            SupportCaseStart(
                case_id=case_id,
                due_at=created_at + settings.start_sweep_after,
                static_summary=case_task_summary(number, merchant.name, body.subject),
            )
        )
        try:
            await session.flush()  # the case first: the message and the start refer to it
            session.add(message)
            await session.commit()
        except IntegrityError:
            await session.rollback()  # another case took the number: take the next one
            made = await _made_by(session, merchant, idempotency_ref)
            if made is not None:  # or a run of the same request made it meanwhile
                return made
            if attempt == NUMBER_ATTEMPTS - 1:
                raise
            continue
        starter.start_soon(case_id)
        return _public(state, row, [message], requests, {})
    raise AssertionError("unreachable")


async def _made_by(
    session: AsyncSession, merchant: Merchant, idempotency_ref: str | None
) -> CasePublic | None:
    """The merchant's case an earlier run of this request made, if any."""
    if idempotency_ref is None:
        return None
    found = await session.exec(
        select(SupportCase).where(
            SupportCase.idempotency_ref == idempotency_ref,
            SupportCase.merchant_id == merchant.id,
        )
    )
    row = found.first()
    return await render(session, row) if row is not None else None


def _row(state: CaseState, inp: CaseInput, body: CaseCreate, request_ids: list[str]) -> SupportCase:
    return SupportCase(
        id=state.case_id,
        number=state.number,
        merchant_id=state.merchant_id,
        type=state.type.value,
        category=state.category.value,
        channel=state.channel.value,
        priority=state.priority.value,
        subject=state.subject,
        status=state.status.value,
        assignee_id=state.assignee_id,
        queue=state.queue.value,
        order_id=state.order_id,
        request_ids=request_ids,
        phone=body.phone,
        complaint=body.complaint.model_dump(mode="json") if body.complaint else None,
        first_response_due_at=state.first_response_due_at,
        next_response_due_at=state.next_response_due_at,
        sla_due_at=state.due_at,
        sla_state=state.sla_state.value,
        state=state.model_dump(mode="json"),
        workflow_input=inp.model_dump(mode="json"),
        version=state.version,
        created_at=state.created_at,
        updated_at=state.updated_at,
    )


async def _check_order(session: AsyncSession, merchant: Merchant, body: CaseCreate) -> None:
    order = await session.get(Order, body.order_id)
    if order is None or order.merchant_id != merchant.id:
        raise Invalid(f"order_id: no order {body.order_id} of yours", code="unknown_order")
    if body.type is CaseType.PARCEL_COMPLAINT:
        state = OrderState.model_validate(order.state)
        if state.status not in SHIPPED and not state.shipments:
            raise Invalid(
                f"order_id: order {order.id} is {state.status.value}; a parcel complaint is "
                "about an order that has shipped",
                code="order_not_shipped",
                details={"order_id": order.id, "status": state.status.value},
            )


async def _known_request_ids(
    session: AsyncSession, merchant_id: str, request_ids: Iterable[str]
) -> list[str]:
    """Of ``request_ids``, those of the merchant's own failed requests, in the order sent."""
    wanted = list(dict.fromkeys(request_ids))
    found = {entry.request_id for entry in await requests_for(session, merchant_id, wanted)}
    return [rid for rid in wanted if rid in found]


async def _requests(
    session: AsyncSession, merchant_id: str, request_ids: list[str]
) -> list[RequestLogEntry]:
    return await requests_for(session, merchant_id, request_ids)


async def _csm(session: AsyncSession, merchant: Merchant) -> Agent | None:
    """The merchant's CSM, when their plan includes one and an active one is assigned."""
    if not INCLUDES[plan_named(merchant.plan)].csm or merchant.csm_agent_id is None:
        return None
    agent = await session.get(Agent, merchant.csm_agent_id)
    if agent is None or not agent.active or agent.role != "csm":
        return None
    return agent


async def _next_number(session: AsyncSession) -> int:
    highest = (await session.exec(select(func.max(SupportCase.number)))).one()
    return FIRST_NUMBER if highest is None else int(highest) + 1


def _message_id() -> str:
    return message_id("", None)


# ---------------------------------------------------------------------------- reads


async def case_row(session: AsyncSession, case_id: str, merchant: Merchant | None) -> SupportCase:
    """The case; for a merchant only their own (another merchant's is a 404, never a 403)."""
    row = await session.get(SupportCase, case_id)
    if row is None or (merchant is not None and row.merchant_id != merchant.id):
        raise NotFound(f"no support case {case_id}", code="case_not_found")
    return row


async def render(session: AsyncSession, row: SupportCase) -> CasePublic:
    state = CaseState.model_validate(row.state)
    messages = list(
        await session.exec(
            select(SupportCaseMessage)
            .where(SupportCaseMessage.case_id == row.id)
            .order_by(col(SupportCaseMessage.created_at), col(SupportCaseMessage.id))
        )
    )
    agent_ids = {m.author_id for m in messages if m.author_kind == "agent" and m.author_id}
    names: dict[str, str] = {}
    if agent_ids:
        agents = await session.exec(
            select(Agent.id, Agent.name).where(col(Agent.id).in_(agent_ids))
        )
        names = dict(agents.all())
    requests = await _requests(session, row.merchant_id, row.request_ids)
    return _public(state, row, messages, requests, names)


def _public(
    state: CaseState,
    row: SupportCase,
    messages: list[SupportCaseMessage],
    requests: list[RequestLogEntry],
    names: dict[str, str],
) -> CasePublic:
    return CasePublic(
        **case_summary(state).model_dump(),
        merchant_id=row.merchant_id,
        phone=row.phone,
        complaint=row.complaint,
        request_ids=list(row.request_ids),
        requests=requests,
        messages=[
            CaseMessagePublic(
                id=m.id,
                author_kind=m.author_kind,  # type: ignore[arg-type]
                author_id=m.author_id,
                author_name=names.get(m.author_id or ""),
                body=m.body,
                attachments=m.attachments,
                created_at=m.created_at,
            )
            for m in messages
        ],
        closed_at=state.closed_at,
        close_reason=state.close_reason,
    )


async def list_merchant_cases(
    session: AsyncSession,
    merchant: Merchant,
    *,
    status: CaseStatus | None,
    limit: int,
    cursor: str | None,
) -> CasePage:
    query = select(SupportCase).where(SupportCase.merchant_id == merchant.id)
    if status is not None:
        query = query.where(SupportCase.status == status.value)
    page, next_cursor = await newest_first(session, query, SupportCase, limit=limit, cursor=cursor)
    return CasePage(
        data=[case_summary(CaseState.model_validate(r.state)) for r in page],
        next_cursor=next_cursor,
    )


# A cursor of the agents' queue: (the due time, or none for cases with no clock, and the number).
_NO_DUE = datetime(1970, 1, 1, tzinfo=UTC)


async def list_queue(
    session: AsyncSession,
    *,
    queue: Queue | None,
    sla_state: SlaState | None,
    status: CaseStatus | None,
    limit: int,
    cursor: str | None,
    assignee_id: str | None = None,
) -> CasePage:
    """Soonest due first; cases that owe no answer after them, oldest first. Closed cases only
    when asked for by ``status``; only those assigned to ``assignee_id`` when given."""
    due, number = col(SupportCase.sla_due_at), col(SupportCase.number)
    query = select(SupportCase)
    if status is not None:
        query = query.where(SupportCase.status == status.value)
    else:
        query = query.where(SupportCase.status != CaseStatus.CLOSED.value)
    if queue is not None:
        query = query.where(SupportCase.queue == queue.value)
    if sla_state is not None:
        query = query.where(SupportCase.sla_state == sla_state.value)
    if assignee_id is not None:
        query = query.where(SupportCase.assignee_id == assignee_id)
    if cursor is not None:
        last_due, last_number = _decode(cursor)
        after = int(last_number)
        if last_due == _NO_DUE:
            query = query.where(due.is_(None), number > after)
        else:
            query = query.where(
                or_(
                    due > last_due,
                    and_(due == last_due, number > after),
                    due.is_(None),
                )
            )
    query = query.order_by(due.is_(None), due, number).limit(limit + 1)
    rows = list(await session.exec(query))
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = _encode(last.sla_due_at or _NO_DUE, str(last.number))
    return CasePage(
        data=[case_summary(CaseState.model_validate(r.state)) for r in page],
        next_cursor=next_cursor,
    )


# ---------------------------------------------------------------------------- changes


async def _update(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: SupportCase,
    update: Any,
    arg: Any,
    idempotency_key: str | None,
) -> CasePublic:
    """Runs an Update of the case's workflow; a refusal is a 409 with the workflow's code."""
    start = await start_operation(session, settings, row)
    await session.commit()  # no database connection is held while the workflow answers

    async def closed() -> ApiError | None:
        await session.refresh(row)
        if applied(CaseState.model_validate(row.state), update, idempotency_key):
            return None  # a retry of the Update that closed it (or came before): the case
        return Conflict("the case is closed; open a new one", code="case_closed")

    await run_update(
        client,
        row.id,
        update,
        arg,
        patience=settings.update_timeout,
        on_closed=closed,
        idempotency_key=idempotency_key,
        start=start,
        what="case",
    )
    # The Update answered after its projection: the read model shows the change.
    await session.refresh(row)
    return await render(session, row)


async def merchant_message(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: SupportCase,
    body: str,
    attachments: list[str],
    idempotency_key: str | None,
) -> CasePublic:
    # From the key: a retry carries the same message (contracts.updates).
    uid = update_id(SupportCaseWorkflow.merchant_message, idempotency_key)
    message = MerchantMessage(
        message_id=message_id(row.id, uid), body=body, attachments=attachments
    )
    return await _update(
        session,
        client,
        settings,
        row,
        SupportCaseWorkflow.merchant_message,
        message,
        idempotency_key,
    )


async def close_case(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: SupportCase,
    idempotency_key: str | None,
) -> CasePublic:
    return await _update(
        session, client, settings, row, SupportCaseWorkflow.close, Closing(), idempotency_key
    )


async def agent_message(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: SupportCase,
    agent: Agent,
    body: str,
    waiting_on_merchant: bool,
    idempotency_key: str | None,
) -> CasePublic:
    uid = update_id(SupportCaseWorkflow.agent_reply, idempotency_key)
    reply = AgentReply(
        message_id=message_id(row.id, uid),
        agent_id=agent.id,
        agent_name=agent.name,
        body=body,
        waiting_on_merchant=waiting_on_merchant,
    )
    return await _update(
        session, client, settings, row, SupportCaseWorkflow.agent_reply, reply, idempotency_key
    )


async def assign(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: SupportCase,
    agent: Agent,
    agent_id: str,
    idempotency_key: str | None,
) -> CasePublic:
    assignee = await session.get(Agent, agent_id)
    if assignee is None or not assignee.active:
        raise Invalid(f"agent_id: no active agent {agent_id}", code="unknown_agent")
    assignment = Assignment(agent_id=assignee.id, by_agent_id=agent.id)
    return await _update(
        session, client, settings, row, SupportCaseWorkflow.assign, assignment, idempotency_key
    )


async def resolve(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    row: SupportCase,
    agent: Agent,
    idempotency_key: str | None,
) -> CasePublic:
    return await _update(
        session,
        client,
        settings,
        row,
        SupportCaseWorkflow.resolve,
        Resolution(agent_id=agent.id),
        idempotency_key,
    )
