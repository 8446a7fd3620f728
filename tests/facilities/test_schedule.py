"""Tests of the production cutoff arithmetic (``domain.schedule``).

The property tests compare the implementation with a deliberately naive oracle that never
converts a local time to UTC (the direction where DST makes things ambiguous): it walks UTC in
15-minute steps, converts each step to local time, and takes the first step showing the wanted
wall time; if the wall time never shows (a spring-forward gap) it takes the instant that is as
far past the end of the gap as the wanted time is past its start. That only works for times and
transitions on a 15-minute grid, which is why the generated schedules use that grid; the example
tests below cover other minutes.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import domain
from domain.facilities import FacilityInfo, Schedule
from domain.schedule import cutoffs_between, describe_cutoff, next_cutoff

BUNDLED = Path(domain.__file__).parent / "facilities.json"
# Temporal's sandbox re-imports this module (see the last test) and forbids file access there.
BUNDLED_ZONES = (
    []
    if workflow.unsafe.in_sandbox()
    else sorted({item["timezone"] for item in json.loads(BUNDLED.read_text())})
)

# Northern and southern hemisphere DST, DST abolished during the range (Sao_Paulo 2019, Tehran
# 2022), gaps at local midnight (Santiago, Havana), a 30-minute DST (Lord_Howe), quarter-hour
# offsets (Kathmandu, Chatham), a "negative DST" in the data (Dublin), Ramadan DST (Casablanca).
ZONES = sorted(
    {
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "America/Sao_Paulo",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "America/Santiago",
        "America/Havana",
        "Pacific/Chatham",
        "Europe/Dublin",
        "Africa/Casablanca",
        "Asia/Tehran",
        "UTC",
        *BUNDLED_ZONES,
    }
)
FIRST_YEAR, LAST_YEAR = 2015, 2035
STEP = timedelta(minutes=15)
BUNDLED_SCHEDULE = Schedule(
    daily=["00:00"], peak_daily=["00:00", "12:00"], peak_months=[10, 11, 12]
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    """A wall-clock time in ``zone``; ``fold=1`` picks the second of a repeated time."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


def times_for(schedule: Schedule, day: date) -> list[str]:
    """The specification's rule, restated: peak times in peak months, if there are any."""
    assert schedule.daily is not None
    if schedule.peak_daily is not None and day.month in schedule.peak_months:
        return schedule.peak_daily
    return schedule.daily


# --- the oracle -------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def local_walls(zone: str, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """(UTC instant, naive local wall time) every 15 minutes around one local date."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(), tzinfo=UTC) - timedelta(hours=15)
    steps = [start + i * STEP for i in range((24 + 15 + 15) * 4)]
    return tuple((u, u.astimezone(tz).replace(tzinfo=None)) for u in steps)


def oracle_instant(zone: str, day: date, hhmm: str) -> datetime:
    wall = datetime.combine(day, time.fromisoformat(hhmm))
    walls = local_walls(zone, day)
    for instant, shown in walls:
        if shown == wall:
            return instant  # the first occurrence
    # Never shown: a spring-forward gap. The clock showed `before`, then jumped to `after`.
    k = next(i for i, (_, shown) in enumerate(walls) if shown > wall)
    (_, before), (transition, _) = walls[k - 1], walls[k]
    gap_start = before + STEP
    return transition + (wall - gap_start)


def oracle_between(schedule: Schedule, zone: str, start: datetime, end: datetime) -> list[datetime]:
    tz = ZoneInfo(zone)
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    found = set()
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        for hhmm in times_for(schedule, day):
            instant = oracle_instant(zone, day, hhmm)
            if start < instant <= end:
                found.add(instant)
    return sorted(found)


# --- strategies -------------------------------------------------------------------------------


@cache
def transition_dates(zone: str) -> tuple[date, ...]:
    """Local dates around which the UTC offset changes (found by comparing daily offsets)."""
    tz = ZoneInfo(zone)
    found = []
    day = datetime(FIRST_YEAR, 1, 1, 12, tzinfo=UTC)
    previous = day.astimezone(tz).utcoffset()
    while day.year <= LAST_YEAR:
        day += timedelta(days=1)
        offset = day.astimezone(tz).utcoffset()
        if offset != previous:
            found.append(day.astimezone(tz).date())
        previous = offset
    return tuple(found)


grid_times = st.builds(lambda h, q: f"{h:02d}:{q * 15:02d}", st.integers(0, 23), st.integers(0, 3))
time_lists = st.lists(grid_times, min_size=1, max_size=4)
schedules = st.one_of(
    st.just(BUNDLED_SCHEDULE),
    st.builds(
        Schedule,
        daily=time_lists,
        peak_daily=st.none() | time_lists,
        peak_months=st.lists(st.integers(1, 12), max_size=12),
    ),
)


def spread_out(times: list[str]) -> bool:
    """No two times within an hour of each other (also across midnight).

    DST gaps are at most an hour, so a shifted time can never land on another configured time.
    """
    minutes = sorted(int(t[:2]) * 60 + int(t[3:]) for t in set(times))
    gaps = [b - a for a, b in zip(minutes, minutes[1:], strict=False)]
    if len(minutes) > 1:
        gaps.append(minutes[0] + 1440 - minutes[-1])
    return all(g > 60 for g in gaps)


spread_schedules = schedules.filter(
    lambda s: spread_out(s.daily or []) and spread_out(s.peak_daily or ["00:00"])
)


@st.composite
def zone_and_day(draw: st.DrawFn) -> tuple[str, date]:
    """A zone and a local date, mostly next to a DST change, a year end or a peak boundary."""
    zone = draw(st.sampled_from(ZONES))
    changes = transition_dates(zone)
    kind = draw(st.sampled_from(["dst", "dst", "dst", "boundary", "any"]))
    year = draw(st.integers(FIRST_YEAR, LAST_YEAR - 1))
    if kind == "dst" and changes:
        base = draw(st.sampled_from(changes))
    elif kind in ("dst", "boundary"):
        base = draw(st.sampled_from([date(year, 1, 1), date(year, 10, 1), date(year + 1, 1, 1)]))
    else:
        base = date(year, 1, 1) + timedelta(days=draw(st.integers(0, 364)))
    return zone, base + timedelta(days=draw(st.integers(-2, 1)))


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and an aware instant near that zone's interesting dates, in a random zone."""
    zone, day = draw(zone_and_day())
    minutes = draw(st.integers(0, 24 * 60 - 1))
    # Land exactly on the 15-minute grid (and so on cutoffs) a good part of the time.
    seconds = draw(st.sampled_from([0, 0, 0, 1, 59]))
    naive = datetime.combine(day, time()) + timedelta(minutes=minutes, seconds=seconds)
    instant = naive.replace(tzinfo=ZoneInfo(zone), fold=draw(st.integers(0, 1)))
    shown_in = draw(st.sampled_from([zone, "UTC", "Asia/Kathmandu", "America/Los_Angeles"]))
    return zone, instant.astimezone(ZoneInfo(shown_in))


# --- properties -------------------------------------------------------------------------------


@FAST
@given(schedules, zone_and_instant())
def test_next_cutoff_is_after_and_nothing_is_skipped(
    schedule: Schedule, zone_instant: tuple[str, datetime]
) -> None:
    zone, after = zone_instant
    cutoff = next_cutoff(schedule, zone, after)
    assert cutoff.utcoffset() == timedelta(0)
    assert cutoff > after  # (1)
    assert cutoffs_between(schedule, zone, after, cutoff) == [cutoff]  # (2)
    # Two days at most: peak 00:00 on Dec 31, then only 23:45 in January (+1 h for DST).
    assert cutoff - after <= timedelta(days=2, hours=1)
    assert cutoff == oracle_between(schedule, zone, after, after + timedelta(days=3))[0]


@FAST
@given(schedules, zone_and_instant(), st.integers(1, 5))
def test_cutoffs_between_matches_the_oracle_and_repeated_next_cutoff(
    schedule: Schedule, zone_instant: tuple[str, datetime], days: int
) -> None:
    zone, start = zone_instant
    end = start + timedelta(days=days)
    found = cutoffs_between(schedule, zone, start, end)
    assert found == oracle_between(schedule, zone, start, end)
    walked = []
    cutoff = next_cutoff(schedule, zone, start)
    while cutoff <= end:
        walked.append(cutoff)
        cutoff = next_cutoff(schedule, zone, cutoff)
    assert walked == found


@FAST
@given(spread_schedules, zone_and_day())
def test_every_local_date_gets_each_configured_time_once(
    schedule: Schedule, zone_day: tuple[str, date]
) -> None:
    """(3) Count by local date, across DST dates: never skipped, never doubled."""
    zone, first = zone_day
    tz = ZoneInfo(zone)
    days = [first + timedelta(days=n) for n in range(4)]
    start = datetime.combine(days[0], time(), tzinfo=tz) - timedelta(hours=3)
    end = datetime.combine(days[-1], time(23, 59), tzinfo=tz) + timedelta(hours=3)
    per_day: dict[date, int] = {}
    for cutoff in cutoffs_between(schedule, zone, start, end):
        per_day[cutoff.astimezone(tz).date()] = per_day.get(cutoff.astimezone(tz).date(), 0) + 1
    for day in days:
        assert per_day.get(day, 0) == len(times_for(schedule, day)), (zone, day)


@FAST
@given(schedules, zone_and_day())
def test_wall_time_is_configured_or_shifted_by_a_gap(
    schedule: Schedule, zone_day: tuple[str, date]
) -> None:
    """(4) A cutoff shows a configured time, unless that time fell into a spring-forward gap."""
    zone, day = zone_day
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(), tzinfo=tz)
    for cutoff in cutoffs_between(schedule, zone, start, start + timedelta(days=3)):
        shown = cutoff.astimezone(tz)
        configured = times_for(schedule, shown.date())
        if shown.strftime("%H:%M") in configured:
            continue
        before = (cutoff - timedelta(hours=3)).astimezone(tz).utcoffset()
        after = shown.utcoffset()
        assert before is not None and after is not None
        gap = after - before
        assert timedelta(0) < gap <= timedelta(hours=1), (zone, shown)
        nominal = shown.replace(tzinfo=None) - gap
        assert nominal.strftime("%H:%M") in configured, (zone, shown)
        # ... and that nominal time really does not exist on that date:
        round_trip = nominal.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
        assert round_trip.replace(tzinfo=None) != nominal


@FAST
@given(
    st.integers(1, 100_000),
    st.datetimes(
        min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(ZONES),
)
def test_every_seconds_is_aligned_to_the_epoch(n: int, after: datetime, zone: str) -> None:
    """(5) Batches at Unix timestamps divisible by N, whatever the facility's zone."""
    schedule = Schedule(every_seconds=n)
    cutoff = next_cutoff(schedule, zone, after)
    since_epoch = cutoff - datetime(1970, 1, 1, tzinfo=UTC)
    assert since_epoch.microseconds == 0
    assert (since_epoch.days * 86400 + since_epoch.seconds) % n == 0
    assert after < cutoff <= after + timedelta(seconds=n)
    assert cutoffs_between(schedule, zone, after, cutoff) == [cutoff]
    window = cutoffs_between(schedule, zone, after, after + timedelta(seconds=n * 3))
    assert len(window) == 3
    assert all(b - a == timedelta(seconds=n) for a, b in zip(window, window[1:], strict=False))


# --- examples ---------------------------------------------------------------------------------

OSLO = "Europe/Oslo"


def test_oslo_peak_season_order_goes_with_the_noon_batch() -> None:
    cutoff = next_cutoff(BUNDLED_SCHEDULE, OSLO, local(OSLO, 2026, 11, 10, 10, 0))
    assert cutoff == local(OSLO, 2026, 11, 10, 12, 0)
    assert cutoff == utc(2026, 11, 10, 11, 0)


def test_oslo_off_season_order_waits_for_midnight() -> None:
    cutoff = next_cutoff(BUNDLED_SCHEDULE, OSLO, local(OSLO, 2026, 9, 10, 10, 0))
    assert cutoff == local(OSLO, 2026, 9, 11, 0, 0)
    assert cutoff == utc(2026, 9, 10, 22, 0)  # CEST, UTC+2


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # September 30 has no noon batch; October 1 does (its 00:00 is still the first one).
        ((2026, 9, 30, 11, 0), (2026, 10, 1, 0, 0)),
        ((2026, 10, 1, 0, 0), (2026, 10, 1, 12, 0)),  # strictly after: not 00:00 itself
        # December 31 is in the peak; January 1 is not, so no noon batch on January 1.
        ((2026, 12, 31, 10, 0), (2026, 12, 31, 12, 0)),
        ((2026, 12, 31, 12, 0), (2027, 1, 1, 0, 0)),
        ((2027, 1, 1, 0, 0), (2027, 1, 2, 0, 0)),
        ((2027, 1, 1, 11, 59), (2027, 1, 2, 0, 0)),
    ],
)
def test_peak_boundaries_and_year_end(
    after: tuple[int, int, int, int, int], expected: tuple[int, int, int, int, int]
) -> None:
    assert next_cutoff(BUNDLED_SCHEDULE, OSLO, local(OSLO, *after)) == local(OSLO, *expected)


def test_sydney_year_end_in_southern_summer() -> None:
    zone = "Australia/Sydney"
    cutoff = next_cutoff(BUNDLED_SCHEDULE, zone, local(zone, 2026, 12, 31, 13, 0))
    assert cutoff == local(zone, 2027, 1, 1, 0, 0)
    assert cutoff == utc(2026, 12, 31, 13, 0)  # AEDT, UTC+11


def test_berlin_spring_forward_time_in_the_gap_fires_once_shifted() -> None:
    """On 2027-03-28 Berlin's clocks jump from 02:00 CET to 03:00 CEST; 02:30 never shows."""
    zone = "Europe/Berlin"
    schedule = Schedule(daily=["02:30"])
    cutoff = next_cutoff(schedule, zone, local(zone, 2027, 3, 28, 0, 0))
    assert cutoff == utc(2027, 3, 28, 1, 30)
    assert cutoff.astimezone(ZoneInfo(zone)).strftime("%H:%M %Z") == "03:30 CEST"
    around = cutoffs_between(schedule, zone, local(zone, 2027, 3, 27), local(zone, 2027, 3, 30))
    assert around == [utc(2027, 3, 27, 1, 30), utc(2027, 3, 28, 1, 30), utc(2027, 3, 29, 0, 30)]


def test_berlin_fall_back_time_fires_at_first_occurrence_only() -> None:
    """On 2027-10-31 02:00-03:00 happens twice in Berlin (CEST, then CET)."""
    zone = "Europe/Berlin"
    schedule = Schedule(daily=["02:30"])
    first = next_cutoff(schedule, zone, local(zone, 2027, 10, 31, 0, 0))
    assert first == utc(2027, 10, 31, 0, 30)  # 02:30 CEST
    # Between the two 02:30s (02:45 CEST), the next one is tomorrow's, not the repeat.
    assert next_cutoff(schedule, zone, utc(2027, 10, 31, 0, 45)) == utc(2027, 11, 1, 1, 30)


def test_new_york_fall_back_day_fires_once() -> None:
    """2026-11-01: 01:00-02:00 happens twice in New York (EDT, then EST)."""
    zone = "America/New_York"
    schedule = Schedule(daily=["01:30"])
    found = cutoffs_between(schedule, zone, local(zone, 2026, 10, 31), local(zone, 2026, 11, 3))
    assert found == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # Asked during the second 01:15 (EST), the first 01:30 is gone: next is tomorrow.
    second_0115 = local(zone, 2026, 11, 1, 1, 15, fold=1)
    assert next_cutoff(schedule, zone, second_0115) == utc(2026, 11, 2, 6, 30)


def test_new_york_spring_forward_with_odd_minutes() -> None:
    zone = "America/New_York"
    schedule = Schedule(daily=["02:07", "02:59", "03:01"])
    found = cutoffs_between(schedule, zone, local(zone, 2026, 3, 8), local(zone, 2026, 3, 9))
    shown = [c.astimezone(ZoneInfo(zone)).strftime("%H:%M") for c in found]
    assert shown == ["03:01", "03:07", "03:59"]  # 02:07 and 02:59 shifted by the hour


def test_midnight_that_does_not_exist_in_santiago() -> None:
    """Chile springs forward at 24:00: 2026-09-06 00:00 never shows; the batch runs at 01:00."""
    zone = "America/Santiago"
    found = cutoffs_between(
        Schedule(daily=["00:00"]), zone, local(zone, 2026, 9, 4, 12), local(zone, 2026, 9, 7, 12)
    )
    shown = [c.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M") for c in found]
    assert shown == ["09-05 00:00", "09-06 01:00", "09-07 00:00"]


def test_lord_howe_half_hour_dst() -> None:
    """Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 on 2026-10-04."""
    zone = "Australia/Lord_Howe"
    cutoff = next_cutoff(Schedule(daily=["02:15"]), zone, local(zone, 2026, 10, 4, 0))
    assert cutoff.astimezone(ZoneInfo(zone)).strftime("%H:%M%z") == "02:45+1100"


def test_far_future_uses_the_zone_rule() -> None:
    """Past the zone file's explicit transitions, the recurring rule still gives DST."""
    zone = "Europe/Berlin"
    cutoff = next_cutoff(Schedule(daily=["12:00"]), zone, local(zone, 2100, 7, 1, 13, 0))
    assert cutoff == utc(2100, 7, 2, 10, 0)


def test_every_seconds_examples() -> None:
    schedule = Schedule(every_seconds=10)
    assert next_cutoff(schedule, "UTC", utc(2026, 1, 1, 0, 0, 7)) == utc(2026, 1, 1, 0, 0, 10)
    assert next_cutoff(schedule, "UTC", utc(2026, 1, 1, 0, 0, 10)) == utc(2026, 1, 1, 0, 0, 20)
    just_before = utc(2026, 1, 1, 0, 0, 10) - timedelta(microseconds=1)
    assert next_cutoff(schedule, "UTC", just_before) == utc(2026, 1, 1, 0, 0, 10)
    assert next_cutoff(schedule, "UTC", utc(1969, 12, 31, 23, 59, 55)) == utc(1970, 1, 1)


def test_cutoffs_between_empty_and_reversed_ranges() -> None:
    at = utc(2026, 5, 5)
    assert cutoffs_between(BUNDLED_SCHEDULE, OSLO, at, at) == []
    assert cutoffs_between(BUNDLED_SCHEDULE, OSLO, at, at - timedelta(days=3)) == []


def test_end_is_included_start_is_not() -> None:
    midnight = local(OSLO, 2026, 5, 5)
    day_after = local(OSLO, 2026, 5, 6)
    assert cutoffs_between(BUNDLED_SCHEDULE, OSLO, midnight, day_after) == [day_after]


@pytest.mark.parametrize("call", ["next", "between", "describe"])
def test_naive_datetimes_are_refused(call: str) -> None:
    naive = datetime(2026, 1, 1)
    info = FacilityInfo(
        id="oslo", name="Oslo", timezone=OSLO, api_url="http://x", schedule=BUNDLED_SCHEDULE
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        if call == "next":
            next_cutoff(BUNDLED_SCHEDULE, OSLO, naive)
        elif call == "between":
            cutoffs_between(BUNDLED_SCHEDULE, OSLO, naive, utc(2026, 2, 1))
        else:
            describe_cutoff(info, naive)


def make_info(name: str, zone: str, schedule: Schedule = BUNDLED_SCHEDULE) -> FacilityInfo:
    return FacilityInfo(
        id=name.lower(), name=name, timezone=zone, api_url="http://x", schedule=schedule
    )


def test_describe_cutoff_shows_local_time_and_zone() -> None:
    oslo = make_info("Oslo", OSLO)
    assert describe_cutoff(oslo, utc(2026, 11, 22, 23, 0)) == "Oslo cutoff 2026-11-23 00:00 CET"
    assert describe_cutoff(oslo, utc(2026, 9, 10, 22, 0)) == "Oslo cutoff 2026-09-11 00:00 CEST"
    nepal = make_info("Kathmandu", "Asia/Kathmandu")
    assert describe_cutoff(nepal, utc(2026, 1, 1)) == "Kathmandu cutoff 2026-01-01 05:45 +0545"


def test_describe_cutoff_shows_seconds_for_every_seconds_batches() -> None:
    dev = make_info("Dev", "UTC", Schedule(every_seconds=5))
    assert describe_cutoff(dev, utc(2026, 1, 1, 8, 0, 5)) == "Dev cutoff 2026-01-01 08:00:05 UTC"


# --- inside Temporal's workflow sandbox -------------------------------------------------------


# Any exception fails the workflow at once (instead of retrying the task until the test times out).
@workflow.defn(sandboxed=True, failure_exception_types=[Exception])
class CutoffInSandbox:
    """Calls the schedule code the way a workflow does, with ``domain.schedule`` imported inside
    the sandbox (this test module is re-imported there), where ``zoneinfo.ZoneInfo`` is a proxy.
    """

    @workflow.run
    async def run(self, info: FacilityInfo) -> tuple[datetime, datetime, str]:
        now = workflow.now()
        cutoff = next_cutoff(info.schedule, info.timezone, now)
        return now, cutoff, describe_cutoff(info, cutoff)


async def test_schedule_works_inside_the_workflow_sandbox(
    env: WorkflowEnvironment,
) -> None:
    info = make_info("Sydney", "Australia/Sydney")
    queue = f"schedule-sandbox-{uuid.uuid4()}"
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "hypothesis", "pytest", "_pytest"
        )
    )
    client = env.client
    async with Worker(
        client, task_queue=queue, workflows=[CutoffInSandbox], workflow_runner=runner
    ):
        now, cutoff, text = await client.execute_workflow(
            CutoffInSandbox.run,
            info,
            id=queue,
            task_queue=queue,
        )
    assert cutoff == next_cutoff(info.schedule, info.timezone, now)
    assert text == describe_cutoff(info, cutoff)
