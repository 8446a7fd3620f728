"""Business time: deadlines where a person would put them, across weekends, holidays and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.business_time import Calendar, add, between

AMS = ZoneInfo("Europe/Amsterdam")
OFFICE = {day: ["09:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
NL = Calendar(timezone="Europe/Amsterdam", holidays_country="NL", hours=OFFICE)


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


def test_friday_evening_plus_eight_hours_is_monday_afternoon() -> None:
    due = add(NL, ams(2026, 11, 27, 17, 0), timedelta(hours=8))  # a Friday
    assert due == ams(2026, 11, 30, 16, 0)
    assert between(NL, ams(2026, 11, 27, 17, 0), due) == timedelta(hours=8)


def test_public_holidays_and_closed_dates_are_skipped() -> None:
    # Friday 24 Dec 2027 at 17:00; 25 and 26 Dec fall on the weekend; Monday 27 is open in NL.
    assert add(NL, ams(2027, 12, 24, 17, 0), timedelta(hours=2)) == ams(2027, 12, 27, 10, 0)
    # King's Day, Tuesday 27 April 2027, is off.
    assert add(NL, ams(2027, 4, 26, 17, 0), timedelta(hours=2)) == ams(2027, 4, 28, 10, 0)
    closed = NL.model_copy(update={"closed_dates": frozenset({date(2027, 4, 28)})})
    assert add(closed, ams(2027, 4, 26, 17, 0), timedelta(hours=2)) == ams(2027, 4, 29, 10, 0)


def test_a_whole_day_is_as_long_as_the_clocks_make_it() -> None:
    always = Calendar(
        timezone="Europe/Amsterdam",
        hours={d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    )
    # Summer time ends on Sunday 25 October 2026: that day has 25 hours, 29 March 23.
    assert between(always, ams(2026, 10, 25, 0, 0), ams(2026, 10, 26, 0, 0)) == timedelta(hours=25)
    assert between(always, ams(2026, 3, 29, 0, 0), ams(2026, 3, 30, 0, 0)) == timedelta(hours=23)
    # A day of business time from Saturday noon is Sunday noon by the clock on the wall.
    assert add(always, ams(2026, 10, 24, 12, 0), timedelta(hours=24)) == ams(2026, 10, 25, 11, 0)


def test_extended_hours_replace_the_week_for_the_dates_they_cover() -> None:
    peak = Calendar.model_validate(
        NL.model_dump()
        | {
            "extended": [
                {"from": "2026-12-01", "to": "2026-12-24", "hours": {"sat": ["10:00-14:00"]}}
            ]
        }
    )
    # Friday 4 December 17:00 + 2 h: 1 h on Friday, 1 h on the peak Saturday.
    assert add(peak, ams(2026, 12, 4, 17, 0), timedelta(hours=2)) == ams(2026, 12, 5, 11, 0)


@pytest.mark.parametrize(
    "bad",
    [
        {"timezone": "Europe/Amsterdam", "hours": {}},
        {"timezone": "Europe/Amsterdam", "hours": {"mon": []}},
        {"timezone": "Mars/Olympus", "hours": OFFICE},
        {"timezone": "Europe/Amsterdam", "hours": {"mon": ["18:00-09:00"]}},
        {"timezone": "Europe/Amsterdam", "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}},
        {"timezone": "Europe/Amsterdam", "hours": {"mon": ["9-5"]}},
        {"timezone": "Europe/Amsterdam", "hours": OFFICE, "holidays_country": "XX"},
    ],
)
def test_a_calendar_that_cannot_work_is_refused_when_loaded(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Calendar.model_validate(bad)


# ---------------------------------------------------------------------------- properties

ZONES = [
    "Europe/Amsterdam",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/Sao_Paulo",
]
WEEKS = [
    OFFICE,
    {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    {"mon": ["08:00-12:00", "13:00-17:30"], "wed": ["01:30-03:30"], "sat": ["22:00-24:00"]},
    {"sun": ["02:00-04:00"]},  # inside the DST change in several zones
]
COUNTRIES = [None, "NL", "US", "AU", "IN", "GB"]


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    return Calendar(
        timezone=draw(st.sampled_from(ZONES)),
        holidays_country=draw(st.sampled_from(COUNTRIES)),
        hours=draw(st.sampled_from(WEEKS)),
    )


instants = st.datetimes(
    min_value=datetime(2025, 12, 20), max_value=datetime(2028, 1, 10), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=120))


@given(calendars(), instants, durations)
def test_between_undoes_add(calendar: Calendar, start: datetime, duration: timedelta) -> None:
    due = add(calendar, start, duration)
    assert due >= start
    assert between(calendar, start, due) == duration


@given(calendars(), instants, durations, durations)
def test_more_business_time_is_never_earlier(
    calendar: Calendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    shorter, longer = sorted((a, b))
    assert add(calendar, start, shorter) <= add(calendar, start, longer)


@given(calendars(), instants, durations)
def test_a_deadline_falls_on_a_working_moment(
    calendar: Calendar, start: datetime, duration: timedelta
) -> None:
    assume(duration > timedelta(0))
    due = add(calendar, start, duration)
    just_before = due - timedelta(microseconds=1)
    zone = ZoneInfo(calendar.timezone)
    day = just_before.astimezone(zone).date()
    assert not calendar.is_closed(day), f"{due} is on a day off ({day})"
    assert between(calendar, just_before, due) == timedelta(microseconds=1), "open just before"


@given(calendars(), instants, instants, instants)
def test_business_time_adds_up_over_consecutive_stretches(
    calendar: Calendar, a: datetime, b: datetime, c: datetime
) -> None:
    a, b, c = sorted((a, b, c))
    assume(c - a <= timedelta(days=60))
    whole = between(calendar, a, c)
    assert whole == between(calendar, a, b) + between(calendar, b, c)
    assert timedelta(0) <= whole <= c - a
