"""CustomerContactWorkflow: one durable workflow per customer contact (workflow id = contact
id), from the merchant's first message until the contact closes.

What a contact waits for (``_next_wake``):

- while the merchant owes a reply (a customer message started the clock): the reminder at
  ``reminder_fraction`` of the target (the merchant is e-mailed), then the deadline, where the
  miss is recorded (``sla_state`` ``missed``, a ``missed`` deadline in the read model, counted
  in ``GET /v1/support/standards``);
- otherwise: the close, ``close_after`` (30 days) after the last message.

Deadlines are business time in the merchant's own calendar, carried in the input with its public
holidays written out as dates (``domain.contacts.contact_rules``): no lookup runs in the
sandbox, and a running contact keeps the rules it started with.

Messages arrive as Updates (``merchant_reply`` from the API, ``customer_message`` from the
``/c/{token}`` page) so the caller answers with the contact as it now is; a validator refuses
them once the contact is closed, and the customer's beyond ``CUSTOMER_MESSAGES_PER_HOUR``,
costing no history. The merchant is e-mailed about customer messages at most once per
``notify_interval`` (the input's): the first at once, the next ones counted in one e-mail when
the interval has passed (``notify``). Every change goes through ``_commit``
(``workflows.common.Projector``): search attributes, then the read model and the
``customer_contact.message_received`` webhook through one projection activity, a regular one for
a batch holding an Update's change. E-mails go out after their change is projected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.search_attributes as sa
    from activities.contacts import CustomerContactActivities
    from contracts.contacts import (
        ContactInput,
        ContactMail,
        ContactMailKind,
        ContactProjection,
        CustomerReply,
        MerchantReply,
    )
    from domain.business_time import describe_due
    from domain.contacts import (
        CUSTOMER_MESSAGES_PER_HOUR,
        ContactMessage,
        ContactRefusal,
        ContactState,
        ContactStatus,
        Deadline,
        customer_limit_reached,
    )
    from domain.sla import ReplyClock, ReplySla, start_clock
    from workflows.common import Outbox, Projector
    from workflows.conversation import Conversation, Wake


# Since this patch the merchant hears of customer messages at most once per the input's
# ``notify_interval`` (older runs e-mailed every message at once).
NOTIFY_BATCHED = "contact-notify-batched"


def _pairs(state: ContactState) -> list[sa.Pair]:
    """``MerchantId``, ``SlaState``, ``SlaDueAt``, as for cases."""
    return sa.pairs(
        SearchAttributePair(sa.MERCHANT_ID, state.merchant_id),
        SearchAttributePair(sa.SLA_STATE, state.sla_state.value),
        sa.maybe(sa.SLA_DUE_AT, state.reply_due_at),
    )


def contact_search_attributes(state: ContactState) -> TypedSearchAttributes:
    return sa.typed(_pairs(state))


def _log_line(state: ContactState, change: str) -> str:
    sla, version = state.sla_state.value, state.version
    return f"contact {state.contact_id}: {change} (sla {sla}, version {version})"


def _mail_summary(mail: ContactMail) -> str:
    return f"e-mail ({mail.kind.replace('_', ' ')})"


@workflow.defn(name="CustomerContactWorkflow")
class CustomerContactWorkflow:
    @workflow.init
    def __init__(self, inp: ContactInput) -> None:
        self._input = inp
        self._rules = inp.rules
        self._state = state = (inp.state or inp.contact).model_copy(deep=True)
        self._new_messages: list[ContactMessage] = []
        self._deadlines: list[Deadline] = []
        # The newest customer message's text, for the merchant's next e-mail (this run only).
        self._latest_body: str | None = None
        self._projector = Projector(
            state,
            build=self._projection,
            activity=CustomerContactActivities.project_contact,
            search_attributes=lambda s: sa.updates(_pairs(s), unset=[sa.SLA_DUE_AT]),
            details=self._waiting_text,
            log=_log_line,
        )
        self._outbox = Outbox(
            activity=CustomerContactActivities.send_contact_mail,
            summary=_mail_summary,
            refused=self._mail_refused,
        )
        if inp.state is None:
            # The merchant's first message goes to the customer with their link.
            self._outbox.add(
                self._mail("merchant_message", inp.customer_email, body=inp.first_body)
            )
        self._conversation = Conversation(
            inp,
            self._projector,
            self._outbox,
            closed=lambda: state.status is ContactStatus.CLOSED,
            next_wake=self._next_wake,
            fire=self._fire,
        )

    @workflow.run
    async def run(self, inp: ContactInput) -> ContactState:
        await self._conversation.run()
        return self._state

    # ------------------------------------------------------------------ what it waits for

    def _next_wake(self) -> Wake:
        wake = self._sla_wake()
        state = self._state
        if state.unnotified and state.notified_at is not None:
            at = state.notified_at + self._input.notify_interval
            if at < wake.at:
                n = state.unnotified
                return Wake(at, "notify", f"tell the merchant of {n} new customer message(s)")
        return wake

    def _sla_wake(self) -> Wake:
        state = self._state
        clock = state.clock
        if clock is not None and state.sla_state is ReplySla.ON_TRACK:
            due = self._when(clock.due_at)
            return Wake(clock.at_risk_at, "remind", f"remind the merchant (reply due {due})")
        if clock is not None and state.sla_state is ReplySla.AT_RISK:
            return Wake(clock.due_at, "miss", f"merchant's reply due {self._when(clock.due_at)}")
        closes = state.last_message_at + self._rules.close_after
        return Wake(closes, "close", f"close {self._when(closes)} unless someone writes")

    async def _fire(self, kind: str) -> None:
        state, clock = self._state, self._state.clock
        if kind == "remind" and clock is not None and workflow.now() >= clock.due_at:
            kind = "miss"  # started late (Temporal was down): straight to the miss
        if kind == "remind" and clock is not None:
            state.sla_state = ReplySla.AT_RISK
            await self._commit("reminded")
            self._outbox.add(self._mail("reply_reminder", self._input.merchant_email))
        elif kind == "miss" and clock is not None:
            state.sla_state = ReplySla.MISSED
            state.misses += 1
            self._deadlines.append(self._deadline(clock, outcome="missed"))
            await self._commit("missed")
        elif kind == "notify":
            self._notify_merchant()
        elif kind == "close":
            state.status = ContactStatus.CLOSED
            state.closed_at = workflow.now()
            state.clock = None
            await self._commit("closed")

    # ------------------------------------------------------------------ messages

    @workflow.update
    async def customer_message(self, message: CustomerReply) -> ContactState:
        if self._projector.applied():
            return self._state  # a retry: answered as the first time
        batched = workflow.patched(NOTIFY_BATCHED)
        state, now = self._state, workflow.now()
        times = [*state.customer_message_times, now]
        state.customer_message_times = times[-CUSTOMER_MESSAGES_PER_HOUR:]
        if state.clock is None:  # the merchant had the last word: a new reply clock
            rules = self._rules
            state.clock = start_clock(
                ReplyClock,
                rules.calendar,
                now,
                rules.target,
                rules.reminder_fraction,
                message_id=message.message_id,
            )
            state.sla_state = ReplySla.ON_TRACK
            self._deadlines.append(self._deadline(state.clock))
        state.messages += 1
        state.last_message_at = now
        await self._commit(
            "customer_message",
            ContactMessage(
                id=message.message_id, author_kind="customer", body=message.body, created_at=now
            ),
        )
        if batched:
            state.unnotified += 1
            self._latest_body = message.body
            self._notify_merchant()
        else:
            self._outbox.add(
                self._mail("customer_message", self._input.merchant_email, body=message.body)
            )
        self._conversation.moved()
        return state

    @customer_message.validator
    def _validate_customer_message(self, message: CustomerReply) -> None:
        self._refuse_if_closed()
        state = self._state
        if customer_limit_reached(state.customer_message_times, workflow.now()):
            if not self._projector.applied():
                raise ApplicationError(
                    f"at most {CUSTOMER_MESSAGES_PER_HOUR} messages an hour; the shop has "
                    "your messages",
                    type=ContactRefusal.TOO_MANY_MESSAGES,
                    non_retryable=True,
                )

    def _notify_merchant(self) -> None:
        """One e-mail to the merchant about the customer messages it has not told of, unless
        one went out less than ``notify_interval`` ago (then the wake ``notify`` sends it)."""
        state, now = self._state, workflow.now()
        if not state.unnotified:
            return
        if state.notified_at is not None and now < state.notified_at + self._input.notify_interval:
            return
        mail = self._mail("customer_message", self._input.merchant_email, body=self._latest_body)
        mail.messages = state.unnotified
        self._outbox.add(mail)
        state.notified_at, state.unnotified, self._latest_body = now, 0, None

    @workflow.update
    async def merchant_reply(self, reply: MerchantReply) -> ContactState:
        if self._projector.applied():
            return self._state  # a retry: answered as the first time
        state, now = self._state, workflow.now()
        clock = state.clock
        if clock is not None:
            late = state.sla_state is ReplySla.MISSED or clock.late(now)
            if late and state.sla_state is not ReplySla.MISSED:
                state.misses += 1  # the timer had not fired yet: a miss all the same
            state.sla_state = ReplySla.MISSED if late else ReplySla.MET
            self._deadlines.append(
                self._deadline(clock, outcome="missed" if late else "in_time", answered_at=now)
            )
            state.clock = None
        state.messages += 1
        state.last_message_at = now
        await self._commit(
            "merchant_message",
            ContactMessage(
                id=reply.message_id, author_kind="merchant", body=reply.body, created_at=now
            ),
        )
        self._outbox.add(
            self._mail("merchant_message", self._input.customer_email, body=reply.body)
        )
        self._conversation.moved()
        return state

    @merchant_reply.validator
    def _validate_merchant_reply(self, reply: MerchantReply) -> None:
        self._refuse_if_closed()

    @workflow.query
    def contact(self) -> ContactState:
        return self._state

    def _refuse_if_closed(self) -> None:
        if self._state.status is ContactStatus.CLOSED and not self._projector.applied():
            raise ApplicationError(
                "the contact is closed; its conversation ended 30 days after the last message",
                type=ContactRefusal.CONTACT_CLOSED,
                non_retryable=True,
            )

    # ------------------------------------------------------------------ the one place

    async def _commit(self, change: str, message: ContactMessage | None = None) -> None:
        """Every change goes through here: see ``workflows.common.Projector``."""
        if message is not None:
            self._new_messages.append(message)
        await self._projector.commit(change)

    def _projection(self, changes: list[str]) -> ContactProjection:
        projection = ContactProjection(
            state=self._state.model_copy(deep=True),
            new_messages=self._new_messages,
            deadlines=self._deadlines,
            changes=changes,
        )
        self._new_messages, self._deadlines = [], []
        return projection

    def _deadline(
        self,
        clock: ReplyClock,
        *,
        outcome: Literal["in_time", "missed"] | None = None,
        answered_at: datetime | None = None,
    ) -> Deadline:
        state = self._state
        return Deadline(
            id=clock.message_id,
            contact_id=state.contact_id,
            merchant_id=state.merchant_id,
            started_at=clock.started_at,
            due_at=clock.due_at,
            answered_at=answered_at,
            outcome=outcome,
        )

    def _mail(self, kind: ContactMailKind, to: str, *, body: str | None = None) -> ContactMail:
        state, inp = self._state, self._input
        due = state.reply_due_at
        return ContactMail(
            kind=kind,
            to=to,
            contact_id=state.contact_id,
            support_id=state.support_id,
            order_reference_id=inp.order_reference_id,
            merchant_name=inp.merchant_name,
            subject=state.subject,
            body=body,
            due_at=due,
            due_text=self._when(due) if due else None,
        )

    async def _mail_refused(self, mail: ContactMail, reason: str) -> None:
        workflow.logger.warning(
            "contact %s: %s e-mail refused: %s", self._state.contact_id, mail.kind, reason
        )

    # ------------------------------------------------------------------ helpers

    def _when(self, moment: datetime) -> str:
        """A deadline as the merchant reads it, in their own time zone."""
        return describe_due(self._rules.calendar, moment)

    def _waiting_text(self, state: ContactState) -> str:
        if state.status is ContactStatus.CLOSED:
            return "closed"
        if state.clock is not None:
            due = self._when(state.clock.due_at)
            if state.sla_state is ReplySla.MISSED:
                return f"missed: the merchant's reply was due {due}"
            return f"waiting for the merchant's reply, due {due}"
        return "waiting for the customer"
