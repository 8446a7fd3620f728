"""SupportCaseWorkflow: one durable workflow per support case (workflow id = case id).

What a case waits for, and until when (``_next_wake``):

- while the team owes an answer (``open`` with a running clock): the at-risk moment
  (``at_risk_fraction`` of the target, in the support calendar's business time), which warns the
  support queue, then the target itself, which marks the case ``breached`` and escalates it (the
  escalation address, and a premium merchant's CSM);
- while it waits on the merchant: a reminder to the merchant after 3 days, the close after 7;
- once resolved: the close after 7 days, unless the merchant writes again;
- otherwise (answered, nothing due): the next message.

Deadlines come from ``domain.sla.start_clock`` with the calendar carried in the input (its
public holidays written out as dates, so no lookup runs in the sandbox): the first response from
the case's creation (the moment the API answered 201, even if Temporal started the workflow
later), the next response from the merchant message that started the clock (``workflow.now()``).

Agents and merchants change a case through Updates, so the API answers with the case as it now
is; a validator refuses what the case's status does not allow, costing no history. Every change
goes through ``_commit`` (``workflows.common.Projector``): search attributes, then the read model
(``support_cases`` and the new messages) and the ``support_case.updated`` webhook through one
projection activity, a regular one for a batch holding an Update's change. E-mails go out after
the change is projected.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.search_attributes as sa
    from activities.cases import SupportCaseActivities
    from contracts.cases import (
        AgentReply,
        Assignment,
        CaseInput,
        CaseMail,
        CaseMailKind,
        CaseProjection,
        Closing,
        MerchantMessage,
        Resolution,
    )
    from domain.business_time import describe_due
    from domain.cases import CaseMessage, CaseRefusal, CaseState, CaseStatus
    from domain.sla import ResponseClock, SlaState, start_clock
    from domain.support import Plan
    from workflows.common import Outbox, Projector
    from workflows.conversation import Conversation, Wake


def _pairs(state: CaseState) -> list[sa.Pair]:
    return sa.pairs(
        SearchAttributePair(sa.CASE_STATUS, state.status.value),
        SearchAttributePair(sa.SLA_STATE, state.sla_state.value),
        SearchAttributePair(sa.MERCHANT_ID, state.merchant_id),
        sa.maybe(sa.SLA_DUE_AT, state.due_at),
    )


def case_search_attributes(state: CaseState) -> TypedSearchAttributes:
    return sa.typed(_pairs(state))


def _log_line(state: CaseState, change: str) -> str:
    return (
        f"case {state.case_id}: {change} (status {state.status.value}, "
        f"sla {state.sla_state.value}, version {state.version})"
    )


def _mail_summary(mail: CaseMail) -> str:
    return f"e-mail ({mail.kind.replace('_', ' ')}) to {', '.join(mail.to)}"[:200]


@workflow.defn(name="SupportCaseWorkflow")
class SupportCaseWorkflow:
    @workflow.init
    def __init__(self, inp: CaseInput) -> None:
        self._input = inp
        self._rules = inp.rules
        self._state = state = (inp.state or inp.case).model_copy(deep=True)
        self._new_messages: list[CaseMessage] = []
        self._projector = Projector(
            state,
            build=self._projection,
            activity=SupportCaseActivities.project_case,
            search_attributes=lambda s: sa.updates(_pairs(s), unset=[sa.SLA_DUE_AT]),
            details=self._waiting_text,
            log=_log_line,
        )
        # E-mails to send once their change is projected, in order.
        self._outbox = Outbox(
            activity=SupportCaseActivities.send_case_mail,
            summary=_mail_summary,
            refused=self._mail_refused,
        )
        self._conversation = Conversation(
            inp,
            self._projector,
            self._outbox,
            closed=lambda: state.status is CaseStatus.CLOSED,
            next_wake=self._next_wake,
            fire=self._fire,
        )

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseState:
        await self._conversation.run()
        return self._state

    # ------------------------------------------------------------------ what it waits for

    def _next_wake(self) -> Wake | None:
        state, rules = self._state, self._rules
        if state.status is CaseStatus.OPEN and state.clock is not None:
            clock = state.clock
            what = clock.kind.replace("_", " ")
            due = describe_due(rules.calendar, clock.due_at)
            if state.sla_state is SlaState.ON_TRACK:
                at_risk = describe_due(rules.calendar, clock.at_risk_at)
                return Wake(clock.at_risk_at, "at_risk", f"{what} at risk {at_risk} (due {due})")
            if state.sla_state is SlaState.AT_RISK:
                return Wake(clock.due_at, "breach", f"{what} due {due}")
            return None  # breached: escalated; waits for the answer
        if state.status is CaseStatus.WAITING_ON_MERCHANT and state.waiting_since is not None:
            if not state.reminder_sent:
                at = state.waiting_since + rules.waiting_reminder_after
                return Wake(at, "remind", f"remind the merchant {self._when(at)}")
            at = state.waiting_since + rules.waiting_close_after
            return Wake(
                at, "close_waiting", f"close without the merchant's answer {self._when(at)}"
            )
        if state.status is CaseStatus.RESOLVED and state.resolved_at is not None:
            at = state.resolved_at + rules.resolved_close_after
            return Wake(at, "close_resolved", f"close the resolved case {self._when(at)}")
        return None

    async def _fire(self, kind: str) -> None:
        state, inp = self._state, self._input
        now = workflow.now()
        if kind == "at_risk" and state.clock is not None and now >= state.clock.due_at:
            kind = "breach"  # started late (Temporal was down): straight to the breach
        if kind == "at_risk":
            state.sla_state = SlaState.AT_RISK
            await self._commit("at_risk")
            self._mail("at_risk", [self._rules.support_address])
        elif kind == "breach":
            state.sla_state = SlaState.BREACHED
            await self._commit("breached")
            to = [self._rules.escalation_address]
            if inp.plan is Plan.PREMIUM and inp.csm_email:
                to.append(inp.csm_email)
            self._mail("breached", to)
        elif kind == "remind":
            state.reminder_sent = True
            await self._commit("waiting_reminder")
            self._mail("waiting_reminder", [inp.merchant_email])
        elif kind == "close_waiting":
            days = self._rules.waiting_close_after.days
            await self._close(f"no answer from the merchant for {days} days", "closed")
        elif kind == "close_resolved":
            days = self._rules.resolved_close_after.days
            await self._close(f"resolved {days} days ago, no message since", "closed")

    async def _close(self, reason: str, change: str) -> None:
        state = self._state
        now = workflow.now()
        state.status = CaseStatus.CLOSED
        state.closed_at, state.close_reason = now, reason
        state.clock, state.next_response_due_at = None, None
        if state.sla_state is SlaState.PAUSED:
            state.sla_state = SlaState.MET
        await self._commit(change, self._system_message(f"Case closed: {reason}."))

    # ------------------------------------------------------------------ merchants and agents

    @workflow.update
    async def merchant_message(self, message: MerchantMessage) -> CaseState:
        if self._projector.applied():
            return self._state  # a retry: answered as the first time
        state, now = self._state, workflow.now()
        state.status = CaseStatus.OPEN
        state.waiting_since, state.reminder_sent, state.resolved_at = None, False, None
        if state.clock is None:  # the team had the last word: a new next-response clock
            rules = self._rules
            state.clock = start_clock(
                ResponseClock,
                rules.calendar,
                now,
                rules.targets.next_response,
                rules.at_risk_fraction,
                kind="next_response",
            )
            state.next_response_due_at = state.clock.due_at
            state.sla_state = SlaState.ON_TRACK
        state.messages += 1
        await self._commit(
            "merchant_message",
            CaseMessage(
                id=message.message_id,
                author_kind="merchant",
                author_id=state.merchant_id,
                body=message.body,
                attachments=message.attachments,
                created_at=now,
            ),
        )
        self._conversation.moved()  # after the projection: the run loop then looks again once
        return state

    @merchant_message.validator
    def _validate_merchant_message(self, message: MerchantMessage) -> None:
        self._refuse_if_closed()

    @workflow.update
    async def agent_reply(self, reply: AgentReply) -> CaseState:
        if self._projector.applied():
            return self._state  # a retry: answered as the first time
        state, now = self._state, workflow.now()
        self._stop_clock(now)
        if reply.waiting_on_merchant:
            state.status = CaseStatus.WAITING_ON_MERCHANT
            state.waiting_since, state.reminder_sent = now, False
            state.sla_state = SlaState.PAUSED
        elif state.status is CaseStatus.WAITING_ON_MERCHANT:
            state.status = CaseStatus.OPEN
            state.waiting_since = None
        state.messages += 1
        await self._commit(
            "agent_reply",
            CaseMessage(
                id=reply.message_id,
                author_kind="agent",
                author_id=reply.agent_id,
                body=reply.body,
                created_at=now,
            ),
        )
        self._mail(
            "agent_reply", [self._input.merchant_email], body=reply.body, agent=reply.agent_name
        )
        self._conversation.moved()
        return state

    @agent_reply.validator
    def _validate_agent_reply(self, reply: AgentReply) -> None:
        self._refuse_if_closed()

    @workflow.update
    async def assign(self, assignment: Assignment) -> CaseState:
        if self._projector.applied():
            return self._state  # a retry: answered as the first time
        self._state.assignee_id = assignment.agent_id
        await self._commit("assigned")
        return self._state

    @assign.validator
    def _validate_assign(self, assignment: Assignment) -> None:
        self._refuse_if_closed()

    @workflow.update
    async def resolve(self, resolution: Resolution) -> CaseState:
        if self._projector.applied():
            return self._state  # a retry: answered as the first time
        state, now = self._state, workflow.now()
        self._stop_clock(now)
        state.status = CaseStatus.RESOLVED
        state.resolved_at, state.waiting_since = now, None
        await self._commit("resolved", self._system_message("Case resolved by the support team."))
        self._conversation.moved()
        return state

    @resolve.validator
    def _validate_resolve(self, resolution: Resolution) -> None:
        self._refuse_if_closed()
        if self._state.status is CaseStatus.RESOLVED and not self._projector.applied():
            raise ApplicationError(
                "the case is resolved already", type=CaseRefusal.CASE_RESOLVED, non_retryable=True
            )

    @workflow.update
    async def close(self, closing: Closing) -> CaseState:
        if self._projector.applied():
            return self._state  # a retry: answered as the first time
        await self._close(closing.reason, "closed")
        self._conversation.moved()
        return self._state

    @close.validator
    def _validate_close(self, closing: Closing) -> None:
        self._refuse_if_closed()

    @workflow.query
    def case(self) -> CaseState:
        return self._state

    def _refuse_if_closed(self) -> None:
        if self._state.status is CaseStatus.CLOSED and not self._projector.applied():
            raise ApplicationError(
                "the case is closed; open a new one",
                type=CaseRefusal.CASE_CLOSED,
                non_retryable=True,
            )

    def _stop_clock(self, now: datetime) -> None:
        """The team answered (or resolved): the running clock ends, met or breached."""
        state = self._state
        clock = state.clock
        if clock is not None:
            late = state.sla_state is SlaState.BREACHED or clock.late(now)
            state.sla_state = SlaState.BREACHED if late else SlaState.MET
            if clock.kind == "first_response":
                state.first_responded_at = now
            state.clock, state.next_response_due_at = None, None
        elif state.sla_state is SlaState.PAUSED:
            state.sla_state = SlaState.MET

    # ------------------------------------------------------------------ the one place

    async def _commit(self, change: str, message: CaseMessage | None = None) -> None:
        """Every change goes through here: see ``workflows.common.Projector``."""
        if message is not None:
            self._new_messages.append(message)
        await self._projector.commit(change)

    def _projection(self, changes: list[str]) -> CaseProjection:
        projection = CaseProjection(
            state=self._state.model_copy(deep=True),
            new_messages=self._new_messages,
            changes=changes,
        )
        self._new_messages = []
        return projection

    def _mail(
        self,
        kind: CaseMailKind,
        to: list[str],
        *,
        body: str | None = None,
        agent: str | None = None,
    ) -> None:
        state, rules = self._state, self._rules
        closes_at = None
        if kind == "waiting_reminder" and state.waiting_since is not None:
            closes_at = state.waiting_since + rules.waiting_close_after
        due = state.due_at
        self._outbox.add(
            CaseMail(
                kind=kind,
                to=to,
                case_id=state.case_id,
                number=state.number,
                subject=state.subject,
                merchant_name=self._input.merchant_name,
                category=state.category.value,
                priority=state.priority.value,
                due_at=due,
                due_text=describe_due(rules.calendar, due) if due else None,
                body=body,
                agent_name=agent,
                closes_at=closes_at,
            )
        )

    async def _mail_refused(self, mail: CaseMail, reason: str) -> None:
        # No retry changes a refusal; the case shows it to the team.
        await self._commit(
            "notification_failed",
            self._system_message(f"The {mail.kind.replace('_', ' ')} e-mail was refused: {reason}"),
        )

    # ------------------------------------------------------------------ helpers

    def _system_message(self, body: str) -> CaseMessage:
        state = self._state
        state.messages += 1
        return CaseMessage(
            id=f"msg_{state.case_id.removeprefix('case_')}_{state.version + 1}_sys",
            author_kind="system",
            body=body,
            created_at=workflow.now(),
        )

    def _when(self, moment: datetime) -> str:
        return describe_due(self._rules.calendar, moment)

    def _waiting_text(self, state: CaseState) -> str:
        match state.status:
            case CaseStatus.OPEN if state.clock is not None:
                due = self._when(state.clock.due_at)
                if state.sla_state is SlaState.BREACHED:
                    return f"breached: the {state.clock.kind.replace('_', ' ')} was due {due}"
                return f"waiting for the team's {state.clock.kind.replace('_', ' ')}, due {due}"
            case CaseStatus.OPEN:
                return "answered; waiting for the merchant's next message"
            case CaseStatus.WAITING_ON_MERCHANT:
                return "waiting on the merchant (clock paused)"
            case CaseStatus.RESOLVED:
                return "resolved; a merchant message reopens it"
        return f"closed: {state.close_reason}"
