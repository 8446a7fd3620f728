"""A customer contact's workflow in the time-skipping server, with its real activities: a real
database (SQLite and PostgreSQL) and a real SMTP sink.

The merchant works in Berlin (country DE) with the bundled ``customer_reply`` rule: one business
day (``P1D``), Monday to Friday, whole days. Whit Monday (17 May 2027) is a public holiday in
Germany: a customer writing on Friday 14 May at 16:00 gets the merchant's reply due on Tuesday
18 May at 16:00 (8 hours of Friday, then 16 of Tuesday), the reminder at 75% on Tuesday 10:00.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from api.errors import ApiError
from api.services.contacts import CustomerView, customer_reply
from contracts.contacts import CustomerReply, MerchantReply
from contracts.updates import message_id
from db.engine import session_factory
from db.models import CustomerContact
from domain.contacts import NOTIFY_INTERVAL, ContactState
from runtime.settings import Settings
from tests.helpers.contacts import (
    CUSTOMER_EMAIL,
    MERCHANT_EMAIL,
    ContactWorld,
    berlin,
    contact_world,
    link_in,
)
from tests.helpers.mail import text_of
from tests.helpers.polling import apoll
from tests.helpers.workflows import (
    continued_as_new,
    history_event_types,
    projected_after_acceptance,
    sleep_until,
)
from workflows.contacts import CustomerContactWorkflow

FRIDAY_3PM = berlin(2027, 5, 14, 15, 0)
FRIDAY_4PM = berlin(2027, 5, 14, 16, 0)
TUESDAY_4PM = berlin(2027, 5, 18, 16, 0)


@pytest.fixture
async def world(env: WorkflowEnvironment, engine: AsyncEngine, tmp_path: Path) -> Any:
    async with contact_world(env, engine, tmp_path) as world:
        yield world


async def state(handle: WorkflowHandle[Any, ContactState]) -> ContactState:
    return await handle.query(CustomerContactWorkflow.contact)


def near(moment: datetime | None, expected: datetime) -> bool:
    """The time-skipping server lands a few milliseconds after the moment slept to."""
    return moment is not None and abs(moment - expected) < timedelta(seconds=1)


def customer(body: str, n: int = 1) -> CustomerReply:
    return CustomerReply(message_id=f"msg_customer_{n}", body=body)


def merchant(body: str, n: int = 1) -> MerchantReply:
    return MerchantReply(message_id=f"msg_merchant_{n}", body=body)


async def test_a_reply_due_across_the_weekend_and_whit_monday_is_reminded_then_missed(
    env: WorkflowEnvironment, world: ContactWorld
) -> None:
    await sleep_until(env, FRIDAY_3PM)
    handle = await world.open(FRIDAY_3PM, body="Your street number is missing.")

    # The customer gets the merchant's message with a link to the conversation.
    first = await world.mail.wait_for(lambda m: CUSTOMER_EMAIL in str(m["To"]))
    assert "Your street number is missing." in text_of(first)
    assert "SHOP-1001" in str(first["Subject"]) and world.support_id in text_of(first)
    assert link_in(first).startswith("http://api/c/")
    assert (await state(handle)).sla_state == "none"

    await sleep_until(env, FRIDAY_4PM)
    after = await handle.execute_update(
        CustomerContactWorkflow.customer_message, customer("It is Hauptstr. 5, sorry!")
    )
    assert after.sla_state == "on_track"
    assert near(after.reply_due_at, TUESDAY_4PM)
    assert after.clock is not None and near(after.clock.at_risk_at, berlin(2027, 5, 18, 10, 0))
    row = await world.row(handle.id)
    assert near(row.reply_due_at, TUESDAY_4PM) and row.sla_state == "on_track"
    told = await world.mail.wait_for(lambda m: "Your customer wrote" in str(m["Subject"]))
    assert str(told["To"]) == MERCHANT_EMAIL
    assert "It is Hauptstr. 5, sorry!" in text_of(told)
    assert "Tue 18 May 16:00 Berlin" in text_of(told)
    [deadline] = await world.deadlines(handle.id)
    assert deadline.outcome is None and near(deadline.due_at, TUESDAY_4PM)

    # Saturday to Whit Monday: nothing happens; Tuesday 10:00 the merchant is reminded.
    await sleep_until(env, berlin(2027, 5, 18, 9, 59))
    assert (await state(handle)).sla_state == "on_track"
    assert not [m for m in world.mails_to(MERCHANT_EMAIL) if "Reminder" in str(m["Subject"])]
    await sleep_until(env, berlin(2027, 5, 18, 10, 1))
    assert (await state(handle)).sla_state == "at_risk"
    reminder = await world.mail.wait_for(lambda m: "Reminder" in str(m["Subject"]))
    assert str(reminder["To"]) == MERCHANT_EMAIL
    assert "Tue 18 May 16:00 Berlin" in text_of(reminder)

    # 16:00 passes without a reply: the miss is recorded and counted.
    await sleep_until(env, berlin(2027, 5, 18, 15, 59))
    assert (await state(handle)).sla_state == "at_risk"
    await sleep_until(env, berlin(2027, 5, 18, 16, 1))
    missed = await state(handle)
    assert missed.sla_state == "missed" and missed.misses == 1

    async def missed_row() -> bool:
        return (await world.row(handle.id)).sla_state == "missed"

    # The row and the deadline are written by the projection, which can end after the query.
    await apoll("the miss to be projected", missed_row)
    [deadline] = await world.deadlines(handle.id)
    assert deadline.outcome == "missed" and deadline.answered_at is None

    # A late reply reaches the customer, and does not turn the miss into "met".
    late = await handle.execute_update(
        CustomerContactWorkflow.merchant_reply, merchant("Thanks, fixed: Hauptstr. 5.")
    )
    assert late.sla_state == "missed" and late.misses == 1 and late.clock is None
    answer = await world.mail.wait_for(
        lambda m: CUSTOMER_EMAIL in str(m["To"]) and "Thanks, fixed" in text_of(m)
    )
    assert link_in(answer) != link_in(first)  # each e-mail carries a fresh link
    [deadline] = await world.deadlines(handle.id)
    assert deadline.outcome == "missed" and deadline.answered_at is not None
    bodies = [(m.author_kind, m.body) for m in await world.messages(handle.id)]
    assert bodies == [
        ("merchant", "Your street number is missing."),
        ("customer", "It is Hauptstr. 5, sorry!"),
        ("merchant", "Thanks, fixed: Hauptstr. 5."),
    ]


async def test_a_reply_in_time_is_met_and_the_contact_closes_30_days_after_its_last_message(
    env: WorkflowEnvironment, world: ContactWorld
) -> None:
    wednesday = berlin(2027, 6, 2, 9, 0)
    await sleep_until(env, wednesday)
    handle = await world.open(wednesday)
    await handle.execute_update(CustomerContactWorkflow.customer_message, customer("Which?", 1))
    await handle.execute_update(CustomerContactWorkflow.customer_message, customer("Hello?", 2))
    running = await state(handle)
    # The second message joins the running clock: due Thursday 09:00.
    assert near(running.reply_due_at, berlin(2027, 6, 3, 9, 0)) and running.messages == 3
    await sleep_until(env, berlin(2027, 6, 2, 17, 0))
    met = await handle.execute_update(CustomerContactWorkflow.merchant_reply, merchant("Now!"))
    assert met.sla_state == "met" and met.misses == 0 and met.reply_due_at is None
    [deadline] = await world.deadlines(handle.id)
    assert deadline.outcome == "in_time" and deadline.id == "msg_customer_1"

    # Nobody writes for 30 days: the contact closes and takes no more messages.
    await sleep_until(env, berlin(2027, 7, 2, 16, 59))
    assert (await state(handle)).status == "open"
    await sleep_until(env, berlin(2027, 7, 2, 17, 1))
    assert (await handle.result()).status == "closed"
    assert (await world.row(handle.id)).status == "closed"
    with pytest.raises(RPCError):  # the workflow has ended: the API answers contact_closed
        await handle.execute_update(CustomerContactWorkflow.customer_message, customer("Hi", 3))


async def test_a_reply_due_time_is_the_merchants_own_timezone(
    env: WorkflowEnvironment, world: ContactWorld
) -> None:
    """Thursday 23:30 in Berlin is still Thursday there: one business day is Friday 23:30."""
    thursday = berlin(2027, 6, 10, 23, 30)
    await sleep_until(env, thursday - timedelta(minutes=1))
    handle = await world.open(thursday - timedelta(minutes=1))
    await sleep_until(env, thursday)
    after = await handle.execute_update(CustomerContactWorkflow.customer_message, customer("?"))
    assert near(after.reply_due_at, berlin(2027, 6, 11, 23, 30))


async def test_messages_are_projected_only_after_their_acceptance_is_in_the_history(
    env: WorkflowEnvironment, world: ContactWorld
) -> None:
    handle = await world.open(await env.get_current_time())
    await state(handle)  # its first task has run
    for update, message in (
        (CustomerContactWorkflow.customer_message, customer("It is Hauptstr. 5.")),
        (CustomerContactWorkflow.merchant_reply, merchant("Thanks, fixed.")),
    ):
        before = len(await history_event_types(handle))
        answered = await handle.execute_update(update, message)  # type: ignore[arg-type]
        assert (await world.row(handle.id)).version == answered.version
        assert projected_after_acceptance(await history_event_types(handle), before)


async def test_a_customer_message_retried_in_the_next_run_or_after_the_close_is_added_once(
    env: WorkflowEnvironment, world: ContactWorld
) -> None:
    # Temporal runs an Update id once per run: the page's retry (the same form, so the same
    # Update id) that reaches the next run, or the closed contact, must not add the message,
    # the merchant's e-mail and the webhook again, nor be refused as if it had not happened.
    handle = await world.open(await env.get_current_time(), changes_per_run=1)
    uid = "customer_message:form-1"
    message = CustomerReply(message_id=message_id(handle.id, uid), body="The blue one?")
    first = await handle.execute_update(CustomerContactWorkflow.customer_message, message, id=uid)
    await apoll("the contact to continue as new", lambda: continued_as_new(handle))

    again = await handle.execute_update(CustomerContactWorkflow.customer_message, message, id=uid)

    assert again.version == first.version and again.messages == first.messages == 2
    assert len(await world.messages(handle.id)) == 2

    # Reminded, missed and closed 30 days later, each change in a run of its own: the page's
    # retry of the same form then gets the contact as it is; another form is refused.
    await env.sleep(timedelta(days=31))
    assert (await handle.result()).status == "closed"
    async with session_factory(world.engine)() as session:
        view = await _view(session, handle.id)
        answered = await customer_reply(session, world.client, Settings(), view, "x", "form-1")
        assert answered.state.status == "closed"
        assert answered.state.version == (await world.row(handle.id)).version
        with pytest.raises(ApiError) as refused:
            await customer_reply(session, world.client, Settings(), view, "x", "form-2")
        assert refused.value.code == "contact_closed"
    assert len(await world.messages(handle.id)) == 2


async def _view(session: AsyncSession, contact_id: str) -> CustomerView:
    row = await session.get(CustomerContact, contact_id)
    assert row is not None
    state = ContactState.model_validate(row.state)
    return CustomerView(row, state, "Mug Shop", "SHOP-1001", [])


async def test_customer_messages_are_limited_per_hour_and_the_merchant_hears_once_per_interval(
    env: WorkflowEnvironment, world: ContactWorld
) -> None:
    # The customer's page must not flood the merchant: one e-mail at once, then at most one per
    # notify interval counting the messages since; the 11th message in an hour is refused and
    # changes nothing (the page shows a 429).
    start = await env.get_current_time()
    handle = await world.open(start)
    for n in range(1, 11):
        await handle.execute_update(
            CustomerContactWorkflow.customer_message, customer(f"Message {n}", n)
        )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            CustomerContactWorkflow.customer_message, customer("Message 11", 11)
        )
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "too_many_messages"
    limited = await state(handle)
    assert limited.messages == 11 and len(await world.messages(handle.id)) == 11

    def told() -> list[str]:
        return [
            text_of(m)
            for m in world.mails_to(MERCHANT_EMAIL)
            if "Your customer wrote" in str(m["Subject"])
        ]

    await world.mail.wait_for(lambda m: "Your customer wrote" in str(m["Subject"]))
    await asyncio.sleep(0.5)
    [first] = told()
    assert "Message 1" in first
    # The interval passes: one e-mail counts the nine messages since, with the latest.
    await env.sleep(NOTIFY_INTERVAL + timedelta(seconds=1))
    await apoll("the second e-mail", lambda: _at_least(told, 2))
    second = told()[1]
    assert "9 new messages" in second and "Message 10" in second
    # An hour after the first, the customer may write again.
    await env.sleep(timedelta(hours=1) - NOTIFY_INTERVAL)
    again = await handle.execute_update(
        CustomerContactWorkflow.customer_message, customer("Message 12", 12)
    )
    assert again.messages == 12
    assert len(told()) == 2  # the interval since the last e-mail has not passed
    await env.sleep(NOTIFY_INTERVAL)
    await apoll("the third e-mail", lambda: _at_least(told, 3))
    assert len(told()) == 3 and "Message 12" in told()[2]


async def _at_least(mails: Callable[[], list[str]], n: int) -> bool:
    return len(mails()) >= n
