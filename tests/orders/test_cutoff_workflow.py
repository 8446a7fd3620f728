"""The order waits for its facility's cutoff; until then it can change, after it it cannot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.orders import AddressChange
from domain.orders import CancelRequest, ShippingAddress, Status
from domain.schedule import next_cutoff
from tests.helpers.polling import eventually
from tests.helpers.workflows import (
    OSLO,
    SYDNEY,
    Recorder,
    clear_of_a_cutoff,
    order_input,
    order_worker,
    sleep_until,
    start,
    state_of,
    until_status,
)
from workflows.orders import OrderWorkflow


async def test_order_is_submitted_once_at_the_cutoff(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        now = await clear_of_a_cutoff(env)
        handle = await start(env.client, tq, order_input(now))
        state = await state_of(handle)
        assert state.status is Status.SCHEDULED
        assert state.cutoff_at == next_cutoff(OSLO.schedule, OSLO.timezone, now)

        await sleep_until(env, state.cutoff_at - timedelta(seconds=1))
        assert (await state_of(handle)).status is Status.SCHEDULED
        assert rec.jobs == []

        await env.sleep(timedelta(seconds=2))
        after = await until_status(handle, Status.IN_PRODUCTION)
        assert after.job_id == "job-1"
        assert len(rec.jobs) == 1 and rec.jobs[0].order_id == state.order_id
        # The API wrote the creation with the order's row; the workflow projects what changed.
        await eventually("the submission to be projected", lambda: rec.projections)
        assert rec.statuses() == ["in_production"]
        assert rec.events() == ["in_production"]
        assert rec.projections[0].given().event_seq == 2


async def test_cancel_one_second_before_the_cutoff_is_accepted(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, order_input(await clear_of_a_cutoff(env)))
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff - timedelta(seconds=1))

        state = await handle.execute_update(
            OrderWorkflow.cancel, CancelRequest(reason="customer changed their mind")
        )
        assert state.status is Status.CANCELED
        result = await handle.result()
        assert result.status is Status.CANCELED
        assert rec.jobs == [], "a canceled order must never reach the facility"
        assert rec.projections[-1].given().cancel_reason == "customer changed their mind"


async def test_cancel_one_second_after_the_cutoff_is_refused(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, order_input(await clear_of_a_cutoff(env)))
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))

        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(OrderWorkflow.cancel, CancelRequest())
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "order_in_production"

        await until_status(handle, Status.IN_PRODUCTION)
        assert len(rec.jobs) == 1
        assert "canceled" not in rec.events()


async def test_address_change_before_the_cutoff_reaches_the_print_job(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp = order_input(await clear_of_a_cutoff(env))
        handle = await start(env.client, tq, inp)
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff - timedelta(minutes=5))

        new_address = inp.order.shipping_address.model_copy(
            update={"address_line_1": "Storgata 5", "post_code": "0155"}
        )
        state = await handle.execute_update(
            OrderWorkflow.update_shipping_address,
            AddressChange(shipping_address=new_address, facility=OSLO),
        )
        assert state.shipping_address.address_line_1 == "Storgata 5"
        assert state.cutoff_at == cutoff, "same facility: the cutoff stays"

        await env.sleep(timedelta(minutes=6))
        await until_status(handle, Status.IN_PRODUCTION)
        assert len(rec.jobs) == 1
        assert rec.jobs[0].shipping_address.address_line_1 == "Storgata 5"
        assert rec.jobs[0].shipping_address.post_code == "0155"


async def test_address_change_to_another_facility_moves_the_cutoff(
    env: WorkflowEnvironment,
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        inp = order_input(await clear_of_a_cutoff(env))
        handle = await start(env.client, tq, inp)
        sydney_address = ShippingAddress.model_validate(
            {
                **inp.order.shipping_address.model_dump(),
                "city": "Sydney",
                "state": "NSW",
                "post_code": "2000",
                "country": "AU",
                "address_line_1": "1 George St",
            }
        )
        state = await handle.execute_update(
            OrderWorkflow.update_shipping_address,
            AddressChange(shipping_address=sydney_address, facility=SYDNEY),
        )
        now = await env.get_current_time()
        assert state.facility.id == "sydney"
        # The next Sydney midnight, not Oslo's: the order moved to the other facility's clock.
        assert state.cutoff_at is not None
        assert timedelta(0) < state.cutoff_at - now <= timedelta(days=1)
        assert state.cutoff_at.astimezone(ZoneInfo("Australia/Sydney")).strftime("%H:%M") == "00:00"
        await sleep_until(env, state.cutoff_at + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
        assert [j.facility_id for j in rec.jobs] == ["sydney"]


async def test_manual_approval_holds_the_order_until_approved(env: WorkflowEnvironment) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        handle = await start(
            env.client, tq, order_input(await env.get_current_time(), approval="manual")
        )
        assert (await state_of(handle)).status is Status.PENDING_APPROVAL

        await env.sleep(timedelta(days=3))
        state = await state_of(handle)
        assert state.status is Status.PENDING_APPROVAL and state.cutoff_at is None
        assert rec.jobs == []

        approved = await handle.execute_update(OrderWorkflow.approve)
        now = await env.get_current_time()
        assert approved.status is Status.SCHEDULED
        assert approved.cutoff_at == next_cutoff(OSLO.schedule, OSLO.timezone, now)

        with pytest.raises(WorkflowUpdateFailedError) as again:
            await handle.execute_update(OrderWorkflow.approve)
        assert isinstance(again.value.cause, ApplicationError)
        assert again.value.cause.type == "order_not_pending"

        await sleep_until(env, approved.cutoff_at + timedelta(seconds=1))
        await until_status(handle, Status.IN_PRODUCTION)
        assert len(rec.jobs) == 1


async def test_refused_print_job_puts_the_order_on_hold(env: WorkflowEnvironment) -> None:
    rec = Recorder(reject_with="unknown product_uid poster_a3_matte")
    async with order_worker(env.client, rec) as tq:
        handle = await start(env.client, tq, order_input(await clear_of_a_cutoff(env)))
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        await sleep_until(env, cutoff + timedelta(seconds=1))
        state = await until_status(handle, Status.ON_HOLD)
        assert state.hold is not None and "unknown product_uid" in state.hold.description


def _next_local(tz: str, months: set[int], hour: int, after: datetime) -> datetime:
    """The next day in ``months`` at ``hour``:00 local time, at least a day after ``after``."""
    zone = ZoneInfo(tz)
    day = (after + timedelta(days=1)).astimezone(zone).date()
    while day.month not in months:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=zone).astimezone(UTC)


@pytest.mark.parametrize(
    ("months", "arrives", "cutoff_local"),
    [
        ({10, 11, 12}, 9, (0, 12)),  # peak season: a 09:00 order goes at noon the same day
        ({10, 11, 12}, 13, (1, 0)),  # …and a 13:00 order at the next midnight
        ({2, 3, 4}, 9, (1, 0)),  # outside peak season: midnight only
    ],
)
async def test_peak_season_has_two_cutoffs_a_day(
    env: WorkflowEnvironment, months: set[int], arrives: int, cutoff_local: tuple[int, int]
) -> None:
    rec = Recorder()
    async with order_worker(env.client, rec) as tq:
        arrival = _next_local(OSLO.timezone, months, arrives, await env.get_current_time())
        await sleep_until(env, arrival)
        handle = await start(env.client, tq, order_input(await clear_of_a_cutoff(env)))
        cutoff = (await state_of(handle)).cutoff_at
        assert cutoff is not None
        local_arrival = arrival.astimezone(ZoneInfo(OSLO.timezone))
        days_later, hour = cutoff_local
        expected = datetime(
            local_arrival.year, local_arrival.month, local_arrival.day, tzinfo=local_arrival.tzinfo
        ) + timedelta(days=days_later, hours=hour)
        assert cutoff.astimezone(ZoneInfo(OSLO.timezone)).replace(tzinfo=None) == expected.replace(
            tzinfo=None
        )
        await sleep_until(env, cutoff - timedelta(seconds=1))
        assert rec.jobs == []
        await env.sleep(timedelta(seconds=2))
        await until_status(handle, Status.IN_PRODUCTION)
        assert len(rec.jobs) == 1
