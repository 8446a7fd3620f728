"""A support case's workflow in the time-skipping server, with its real activities: a real
database (SQLite and PostgreSQL) and a real SMTP sink.

The dates are chosen so the calendar matters: in 2027 Good Friday (26 March) and Easter Monday
(29 March) are public holidays in the Netherlands, and the clocks go forward on Easter Sunday
(28 March). A case opened on Good Friday at 17:00 in Amsterdam is answered on Tuesday.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from contracts.cases import AgentReply, Closing, MerchantMessage, Resolution
from domain.cases import CaseState
from domain.support import Plan
from tests.helpers.cases import (
    CSM_EMAIL,
    MERCHANT_EMAIL,
    SUPPORT,
    CaseWorld,
    amsterdam,
    case_world,
)
from tests.helpers.keys import keys
from tests.helpers.mail import text_of
from tests.helpers.polling import apoll
from tests.helpers.workflows import (
    continued_as_new,
    history_event_types,
    projected_after_acceptance,
    sleep_until,
)
from workflows.cases import SupportCaseWorkflow
from workflows.client import data_converter

GOOD_FRIDAY_5PM = amsterdam(2027, 3, 26, 17, 0)
UTC_OFFSET_BEFORE = timedelta(hours=1)  # CET
UTC_OFFSET_AFTER = timedelta(hours=2)  # CEST from Sunday 28 March


@pytest.fixture
async def world(env: WorkflowEnvironment, engine: AsyncEngine, tmp_path: Path) -> Any:
    async with case_world(env, engine, tmp_path) as world:
        yield world


async def state(handle: WorkflowHandle[Any, CaseState]) -> CaseState:
    return await handle.query(SupportCaseWorkflow.case)


async def timer_summaries(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The summaries an operator reads on the case's timers (decrypted, as the Web UI shows)."""
    history = await handle.fetch_history()
    converter = data_converter(keys())
    summaries = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED and e.HasField("user_metadata"):
            [summary] = await converter.decode([e.user_metadata.summary], [str])
            summaries.append(summary)
    return summaries


def near(moment: datetime | None, expected: datetime) -> bool:
    return moment is not None and abs(moment - expected) < timedelta(seconds=1)


def reply(body: str = "We are on it.", waiting: bool = False) -> AgentReply:
    return AgentReply(
        message_id=f"msg_{body[:8].replace(' ', '_')}_{waiting}",
        agent_id="agt_1",
        agent_name="Sam",
        body=body,
        waiting_on_merchant=waiting,
    )


async def test_a_case_on_good_friday_evening_is_due_on_tuesday_after_easter_and_dst(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    await sleep_until(env, GOOD_FRIDAY_5PM)
    normal = await world.open(GOOD_FRIDAY_5PM)
    growth = await world.open(GOOD_FRIDAY_5PM, plan=Plan.GROWTH)

    # Good Friday, the weekend and Easter Monday are closed: the clock starts on Tuesday 09:00,
    # an hour later in UTC than it would have before the clocks changed.
    first = (await state(normal)).first_response_due_at
    assert first == amsterdam(2027, 3, 30, 17, 0)  # PT8H
    assert first.astimezone(UTC).hour == 15
    quick = await state(growth)
    assert quick.priority == "priority"
    assert quick.first_response_due_at == amsterdam(2027, 3, 30, 11, 0)  # PT2H
    assert quick.clock is not None and quick.clock.at_risk_at == amsterdam(2027, 3, 30, 10, 30)
    assert "first response at risk Tue 30 Mar 10:30 Amsterdam (due Tue 30 Mar 11:00 Amsterdam)" in (
        await timer_summaries(growth)
    )
    row = await world.row(growth.id)
    assert row.sla_due_at == amsterdam(2027, 3, 30, 11, 0) and row.sla_state == "on_track"

    # Tuesday 10:29: nothing yet; 10:31 at risk, the queue hears of it; 11:01 breached.
    await sleep_until(env, amsterdam(2027, 3, 30, 10, 29))
    assert (await state(growth)).sla_state == "on_track"
    assert not world.mail.messages
    await sleep_until(env, amsterdam(2027, 3, 30, 10, 31))
    assert (await state(growth)).sla_state == "at_risk"
    warned = await world.mail.wait_for(lambda m: "At risk" in str(m["Subject"]))
    assert str(warned["To"]) == SUPPORT.support_address
    assert "Tue 30 Mar 11:00 Amsterdam" in text_of(warned)
    await sleep_until(env, amsterdam(2027, 3, 30, 11, 1))
    assert (await state(growth)).sla_state == "breached"
    breached = await world.mail.wait_for(lambda m: "Breached" in str(m["Subject"]))
    assert str(breached["To"]) == SUPPORT.escalation_address  # growth: no CSM
    assert (await world.row(growth.id)).sla_state == "breached"
    assert (await state(normal)).sla_state == "on_track"  # its target is 17:00

    # A late answer does not turn a breach into "met".
    after = await growth.execute_update(SupportCaseWorkflow.agent_reply, reply("Sorry!"))
    assert after.sla_state == "breached" and after.first_responded_at is not None
    assert after.clock is None


async def test_an_answer_in_time_is_met_and_e_mailed_to_the_merchant(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    start = amsterdam(2027, 4, 7, 10, 0)  # a Wednesday
    await sleep_until(env, start)
    handle = await world.open(start)
    await env.sleep(timedelta(hours=1))
    answered = await handle.execute_update(
        SupportCaseWorkflow.agent_reply, reply("The parcel left Berlin today.\nTracking: 123")
    )
    assert (answered.sla_state, answered.status) == ("met", "open")
    assert answered.next_response_due_at is None and answered.due_at is None
    mail = await world.mail.wait_for(lambda m: MERCHANT_EMAIL in str(m["To"]))
    assert str(mail["Subject"]) == f"[Case #{answered.number}] Order stuck in production"
    assert "The parcel left Berlin today.\nTracking: 123" in text_of(mail)
    assert f"/v1/support/cases/{handle.id}/messages" in text_of(mail)
    # What the API shows: the row and every message, the merchant's first.
    row = await world.row(handle.id)
    assert (row.sla_state, row.version) == ("met", answered.version)
    kinds = [(m.author_kind, m.body[:10]) for m in await world.messages(handle.id)]
    assert kinds == [("merchant", "Order SHOP"), ("agent", "The parcel")]
    # Nothing is due any more: no at-risk or breach e-mail ever comes.
    await env.sleep(timedelta(days=2))
    assert [str(m["Subject"]) for m in world.mail.messages] == [str(mail["Subject"])]


async def test_waiting_on_the_merchant_pauses_the_clock_and_their_answer_restarts_it(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    start = amsterdam(2027, 4, 7, 10, 0)  # Wednesday
    await sleep_until(env, start)
    handle = await world.open(start)
    await env.sleep(timedelta(hours=1))
    asked = await handle.execute_update(
        SupportCaseWorkflow.agent_reply, reply("Which order is it?", waiting=True)
    )
    assert (asked.status, asked.sla_state, asked.due_at) == ("waiting_on_merchant", "paused", None)

    # Two days of silence: far beyond any target, and nobody is warned: the clock is paused.
    await sleep_until(env, amsterdam(2027, 4, 9, 14, 0))  # Friday 14:00
    assert (await state(handle)).sla_state == "paused"
    answered = await handle.execute_update(
        SupportCaseWorkflow.merchant_message,
        MerchantMessage(message_id="msg_m2", body="It is SHOP-1001."),
    )
    # Next response PT16H: Friday 14–18 (4 h), Monday 9–18 (9 h), Tuesday 9–12 (3 h).
    assert (answered.status, answered.sla_state) == ("open", "on_track")
    # (The message arrives a few real milliseconds after the skipped-to moment.)
    assert near(answered.next_response_due_at, amsterdam(2027, 4, 13, 12, 0))
    assert answered.first_response_due_at == amsterdam(2027, 4, 7, 18, 0)
    row = await world.row(handle.id)
    assert row.next_response_due_at == answered.next_response_due_at
    assert row.sla_due_at == answered.next_response_due_at
    assert not [m for m in world.mail.messages if "At risk" in str(m["Subject"])]
    summaries = await timer_summaries(handle)
    assert summaries == [
        "first response at risk Wed 07 Apr 16:00 Amsterdam (due Wed 07 Apr 18:00 Amsterdam)",
        "remind the merchant Sat 10 Apr 11:00 Amsterdam",
        "next response at risk Mon 12 Apr 17:00 Amsterdam (due Tue 13 Apr 12:00 Amsterdam)",
    ]


async def test_a_silent_merchant_is_reminded_after_3_days_and_the_case_closes_after_7(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    start = amsterdam(2027, 4, 7, 10, 0)
    await sleep_until(env, start)
    handle = await world.open(start)
    asked_at = amsterdam(2027, 4, 7, 11, 0)
    await sleep_until(env, asked_at)
    await handle.execute_update(
        SupportCaseWorkflow.agent_reply, reply("Can you send a photo?", waiting=True)
    )
    await world.mail.wait_for(lambda m: "[Case #" in str(m["Subject"]))

    await sleep_until(env, asked_at + timedelta(days=3) - timedelta(minutes=1))
    assert not [m for m in world.mail.messages if "Reminder" in str(m["Subject"])]
    await sleep_until(env, asked_at + timedelta(days=3, minutes=1))
    reminder = await world.mail.wait_for(lambda m: "Reminder" in str(m["Subject"]))
    assert str(reminder["To"]) == MERCHANT_EMAIL
    assert "Wednesday 14 April 2027, 09:00 UTC" in text_of(reminder)  # 7 days after the ask
    assert (await state(handle)).status == "waiting_on_merchant"

    await sleep_until(env, asked_at + timedelta(days=7, minutes=1))
    closed = await handle.result()
    assert closed.status == "closed" and closed.close_reason is not None
    assert "7 days" in closed.close_reason
    row = await world.row(handle.id)
    assert row.status == "closed"
    notes = [m.body for m in await world.messages(handle.id) if m.author_kind == "system"]
    assert notes == ["Case closed: no answer from the merchant for 7 days."]
    reminders = [m for m in world.mail.messages if "Reminder" in str(m["Subject"])]
    assert len(reminders) == 1


async def test_a_breach_escalates_to_the_premium_merchants_csm_too(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    start = amsterdam(2027, 4, 7, 10, 0)
    await sleep_until(env, start)
    premium = await world.open(
        start, plan=Plan.PREMIUM, csm_agent_id="agt_csm", csm_email=CSM_EMAIL, category="billing"
    )
    created = await state(premium)
    assert (created.queue, created.assignee_id) == ("csm", "agt_csm")
    await sleep_until(env, amsterdam(2027, 4, 7, 12, 1))  # priority: PT2H
    breached = await world.mail.wait_for(lambda m: "Breached" in str(m["Subject"]))
    assert str(breached["To"]) == f"{SUPPORT.escalation_address}, {CSM_EMAIL}"
    assert "Mug Shop" in text_of(breached)


async def test_resolved_cases_close_after_7_days_unless_the_merchant_writes_again(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    start = amsterdam(2027, 4, 7, 10, 0)
    await sleep_until(env, start)
    reopened = await world.open(start)
    quiet = await world.open(start)
    for handle in (reopened, quiet):
        resolved = await handle.execute_update(
            SupportCaseWorkflow.resolve, Resolution(agent_id="agt_1")
        )
        assert (resolved.status, resolved.sla_state) == ("resolved", "met")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await quiet.execute_update(SupportCaseWorkflow.resolve, Resolution(agent_id="agt_1"))
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "case_resolved"

    await env.sleep(timedelta(days=2))
    back = await reopened.execute_update(
        SupportCaseWorkflow.merchant_message,
        MerchantMessage(message_id="msg_again", body="It happened again."),
    )
    assert (back.status, back.sla_state) == ("open", "on_track")
    assert back.next_response_due_at is not None

    await env.sleep(timedelta(days=5, minutes=1))
    assert (await quiet.result()).status == "closed"
    assert (await state(reopened)).status == "open"
    # Its workflow has ended: nothing reaches it any more (the API answers 409 case_closed).
    with pytest.raises(RPCError):
        await quiet.execute_update(
            SupportCaseWorkflow.merchant_message,
            MerchantMessage(message_id="msg_late", body="one more thing"),
        )


async def test_the_merchant_closes_their_case_and_nothing_changes_it_any_more(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    start = amsterdam(2027, 4, 7, 10, 0)
    await sleep_until(env, start)
    handle = await world.open(start)
    closed = await handle.execute_update(SupportCaseWorkflow.close, Closing())
    assert (closed.status, closed.close_reason, closed.due_at) == (
        "closed",
        "closed by the merchant",
        None,
    )
    assert (await handle.result()).status == "closed"
    row = await world.row(handle.id)
    assert (row.status, row.sla_due_at) == ("closed", None)
    # Nothing was due any more: no e-mail, even a day later.
    await env.sleep(timedelta(days=1))
    assert world.mail.messages == []


def test_the_dates_are_what_the_docstring_says() -> None:
    closed = SUPPORT.calendar
    assert closed.is_closed(datetime(2027, 3, 26).date())
    assert closed.is_closed(datetime(2027, 3, 29).date())
    assert not closed.is_closed(datetime(2027, 3, 30).date())
    before = amsterdam(2027, 3, 27, 12, 0).utcoffset()
    after = amsterdam(2027, 3, 29, 12, 0).utcoffset()
    assert (before, after) == (UTC_OFFSET_BEFORE, UTC_OFFSET_AFTER)


async def test_an_agent_reply_is_projected_only_after_its_acceptance_is_in_the_history(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    # As for orders: a stalled worker may lose the task that accepted the Update, so the read
    # model must not show the reply before the acceptance is in the history.
    handle = await world.open(await env.get_current_time())
    await state(handle)  # its first task has run
    before = len(await history_event_types(handle))
    answered = await handle.execute_update(SupportCaseWorkflow.agent_reply, reply("On it."))
    assert (await world.row(handle.id)).version == answered.version, "answered after projection"
    assert projected_after_acceptance(await history_event_types(handle), before)


async def test_a_new_run_due_while_an_update_projects_sends_its_mail_and_keeps_the_clock(
    env: WorkflowEnvironment, engine: AsyncEngine, tmp_path: Path
) -> None:
    # A new run is due (here after two changes, as when Temporal suggests one) while an agent's
    # reply is still being projected: its e-mail is queued once that projection ends, when the
    # run already waits to continue as new. That wait sends it; it must not wait for an empty
    # outbox that only the waiting loop would empty (no mail, no timers, then every Update
    # refused at the per-run limit).
    async with case_world(env, engine, tmp_path, slow_projection=1.5) as world:
        handle = await world.open(await env.get_current_time(), changes_per_run=2)
        message = MerchantMessage(message_id="msg_more_details", body="More details.")
        first = await handle.start_update(
            SupportCaseWorkflow.merchant_message,
            message,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        # Accepted while the merchant's message is still projecting: the loop decides on the
        # new run as soon as that projection ends, the reply's still running.
        await handle.execute_update(SupportCaseWorkflow.agent_reply, reply("Checking now."))
        await first.result()

        async def mailed() -> bool:
            return any("Checking now." in text_of(m) for m in world.mails_to(MERCHANT_EMAIL))

        await apoll("the case to continue as new", lambda: continued_as_new(handle))
        await apoll("the reply's e-mail", mailed)
        # The new run goes on: a merchant message starts the next-response clock and its timer.
        again = MerchantMessage(message_id="msg_still_stuck", body="Still stuck.")
        after = await handle.execute_update(SupportCaseWorkflow.merchant_message, again)
        assert after.clock is not None and after.clock.kind == "next_response"
        assert any("next response at risk" in s for s in await timer_summaries(handle))
        assert (await world.row(handle.id)).version == after.version


async def test_an_update_retried_in_the_next_run_answers_as_the_first_time_and_changes_nothing(
    env: WorkflowEnvironment, world: CaseWorld
) -> None:
    # Temporal runs an Update id once per run. A caller's retry (same Idempotency-Key, so the
    # same Update id) that reaches the next run must not add a second message, e-mail and
    # webhook: the applied ids travel with the state.
    handle = await world.open(await env.get_current_time(), changes_per_run=1)
    answer = reply("Looking into it.")
    first = await handle.execute_update(
        SupportCaseWorkflow.agent_reply, answer, id="agent_reply:retry-1"
    )
    await apoll("the case to continue as new", lambda: continued_as_new(handle))

    again = await handle.execute_update(
        SupportCaseWorkflow.agent_reply, answer, id="agent_reply:retry-1"
    )

    assert again.model_dump(exclude={"updated_at"}) == first.model_dump(exclude={"updated_at"})
    assert again.version == first.version and again.messages == first.messages == 2
    assert (await world.row(handle.id)).version == first.version
    await asyncio.sleep(1)  # an e-mail a second reply queued would be out by now
    mails = [m for m in world.mails_to(MERCHANT_EMAIL) if "Looking into it." in text_of(m)]
    assert len(mails) == 1
