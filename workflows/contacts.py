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
them once the contact is closed, costing no history. Every change goes through ``_commit``
(``workflows.conversation``): search attributes, then the read model and the
``customer_contact.message_received`` webhook through one projection activity, a regular one for
a batch holding an Update's change. E-mails go out after their change is projected.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.contacts import CustomerContactActivities
    from contracts.contacts import (
        ContactInput,
        ContactMail,
        ContactMailKind,
        ContactProjection,
        CustomerReply,
        MerchantReply,
    )
    from domain.contacts import (
        ContactMessage,
        ContactRefusal,
        ContactState,
        ContactStatus,
        Deadline,
        ReplySla,
        describe,
        start_clock,
    )
    from workflows import search_attributes as sa
    from workflows.conversation import Conversation


def _pairs(state: ContactState) -> list[SearchAttributePair[Any]]:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.MERCHANT_ID, state.merchant_id),
        SearchAttributePair(sa.SLA_STATE, state.sla_state.value),
    ]
    if state.reply_due_at is not None:
        pairs.append(SearchAttributePair(sa.SLA_DUE_AT, state.reply_due_at))
    return pairs


def contact_search_attributes(state: ContactState) -> TypedSearchAttributes:
    """What a contact starts with (``MerchantId``, ``SlaState``, ``SlaDueAt`` as for cases)."""
    return TypedSearchAttributes(_pairs(state))


@workflow.defn(name="CustomerContactWorkflow")
class CustomerContactWorkflow(Conversation):
    @workflow.init
    def __init__(self, inp: ContactInput) -> None:
        self._conversation()
        self._input = inp
        self._rules = inp.rules
        self._state = (inp.state or inp.contact).model_copy(deep=True)
        self._new_messages: list[ContactMessage] = []
        self._deadlines: list[Deadline] = []
        self._outbox: list[ContactMail] = []
        if inp.state is None:
            # The merchant's first message goes to the customer with their link.
            self._outbox.append(
                self._mail("merchant_message", inp.customer_email, body=inp.first_body)
            )

    @workflow.run
    async def run(self, inp: ContactInput) -> ContactState:
        while self._state.status is not ContactStatus.CLOSED:
            await self._send_mails()
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()
            generation = self._generation

            def changed(g: int = generation) -> bool:
                return self._generation != g or bool(self._outbox)

            moment, kind, summary = self._next_wake()
            if await self._wait_until(moment, summary, changed):
                continue
            again = self._next_wake()
            if again[1] != kind or again[0] > workflow.now():
                continue  # an Update moved what the contact waits for
            await self._fire(kind)
        await self._send_mails()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._send_mails()
        return self._state

    # ------------------------------------------------------------------ what it waits for

    def _next_wake(self) -> tuple[datetime, str, str]:
        state = self._state
        clock = state.clock
        if clock is not None and state.sla_state is ReplySla.ON_TRACK:
            due = describe(self._rules, clock.due_at)
            return clock.remind_at, "remind", f"remind the merchant (reply due {due})"
        if clock is not None and state.sla_state is ReplySla.AT_RISK:
            return (
                clock.due_at,
                "miss",
                f"merchant's reply due {describe(self._rules, clock.due_at)}",
            )
        closes = state.last_message_at + self._rules.close_after
        return closes, "close", f"close {describe(self._rules, closes)} unless someone writes"

    async def _fire(self, kind: str) -> None:
        state, clock = self._state, self._state.clock
        if kind == "remind" and clock is not None and workflow.now() >= clock.due_at:
            kind = "miss"  # started late (Temporal was down): straight to the miss
        if kind == "remind" and clock is not None:
            state.sla_state = ReplySla.AT_RISK
            await self._commit("reminded")
            self._outbox.append(self._mail("reply_reminder", self._input.merchant_email))
        elif kind == "miss" and clock is not None:
            state.sla_state = ReplySla.MISSED
            state.misses += 1
            self._deadlines.append(self._deadline(clock, outcome="missed"))
            await self._commit("missed")
        elif kind == "close":
            state.status = ContactStatus.CLOSED
            state.closed_at = workflow.now()
            state.clock = None
            await self._commit("closed")

    # ------------------------------------------------------------------ messages

    @workflow.update
    async def customer_message(self, message: CustomerReply) -> ContactState:
        state, now = self._state, workflow.now()
        if state.clock is None:  # the merchant had the last word: a new reply clock
            state.clock = start_clock(self._rules, message.message_id, now)
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
        self._outbox.append(
            self._mail("customer_message", self._input.merchant_email, body=message.body)
        )
        self._generation += 1
        return state

    @customer_message.validator
    def _validate_customer_message(self, message: CustomerReply) -> None:
        self._refuse_if_closed()

    @workflow.update
    async def merchant_reply(self, reply: MerchantReply) -> ContactState:
        state, now = self._state, workflow.now()
        clock = state.clock
        if clock is not None:
            late = state.sla_state is ReplySla.MISSED or now > clock.due_at
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
        self._outbox.append(
            self._mail("merchant_message", self._input.customer_email, body=reply.body)
        )
        self._generation += 1
        return state

    @merchant_reply.validator
    def _validate_merchant_reply(self, reply: MerchantReply) -> None:
        self._refuse_if_closed()

    @workflow.query
    def contact(self) -> ContactState:
        return self._state

    def _refuse_if_closed(self) -> None:
        if self._state.status is ContactStatus.CLOSED:
            raise ApplicationError(
                "the contact is closed; its conversation ended 30 days after the last message",
                type=ContactRefusal.CONTACT_CLOSED,
                non_retryable=True,
            )

    # ------------------------------------------------------------------ the one place

    async def _commit(self, change: str, message: ContactMessage | None = None) -> None:
        if message is not None:
            self._new_messages.append(message)
        await self._record(change)

    def _log_line(self, change: str) -> str:
        state = self._state
        return (
            f"contact {state.contact_id}: {change} "
            f"(sla {state.sla_state.value}, version {state.version})"
        )

    def _search_attribute_updates(self) -> list[Any]:
        updates: list[Any] = [pair.key.value_set(pair.value) for pair in _pairs(self._state)]
        if self._state.reply_due_at is None:
            updates.append(sa.SLA_DUE_AT.value_unset())
        return updates

    async def _project(self, *, local: bool) -> None:
        projection = ContactProjection(
            state=self._state.model_copy(deep=True),
            new_messages=self._new_messages,
            deadlines=self._deadlines,
            changes=self._changes,
        )
        self._new_messages, self._deadlines = [], []
        await self._run_projection(
            CustomerContactActivities.project_contact, projection, local=local
        )

    def _deadline(
        self, clock: Any, *, outcome: Any = None, answered_at: datetime | None = None
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
            due_text=describe(self._rules, due) if due else None,
        )

    def _mail_activity(self) -> Callable[..., Any]:
        return CustomerContactActivities.send_contact_mail

    async def _mail_refused(self, mail: ContactMail, reason: str) -> None:
        workflow.logger.warning(
            "contact %s: %s e-mail refused: %s", self._state.contact_id, mail.kind, reason
        )

    # ------------------------------------------------------------------ helpers

    def _waiting_text(self) -> str:
        state = self._state
        if state.status is ContactStatus.CLOSED:
            return "closed"
        if state.clock is not None:
            due = describe(self._rules, state.clock.due_at)
            if state.sla_state is ReplySla.MISSED:
                return f"missed: the merchant's reply was due {due}"
            return f"waiting for the merchant's reply, due {due}"
        return "waiting for the customer"
