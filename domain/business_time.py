"""Business time: a calendar of working hours, and durations counted only while it is open.

A support target such as ``PT8H`` means eight *working* hours: a case opened on Friday at 17:00
in Amsterdam with a 09:00–18:00 week is due on Monday at 16:00, and on Tuesday when Monday is a
public holiday. Two operations, exact to the microsecond and correct across DST changes:

- ``add(calendar, start, duration)``: the first instant at which ``duration`` of open time has
  passed since ``start`` (``start`` itself for a zero duration);
- ``between(calendar, start, end)``: how much open time lies in ``[start, end)``.

They are inverse: ``between(c, s, add(c, s, d)) == d`` for every ``d >= 0``. Besides them,
``resolved_calendar`` writes a calendar's public holidays out as dates (what a workflow carries)
and ``describe_due`` shows a deadline in the calendar's time zone.

A calendar has working hours per weekday in its own time zone (``"09:00-18:00"``, several
per day allowed, ``"00:00-24:00"`` is a whole day), the public holidays of a country from the
``holidays`` package, extra closed dates, and extended hours for peak periods (for the
weekdays they name, on the dates they cover). Wall-clock hours are turned into instants through the
time zone, so a day of 00:00–24:00 is 23 or 25 hours long when the clocks change. A calendar
with no working hour in its week is refused when it is loaded.

Pure and deterministic (no clock, no I/O), so workflows can compute their deadlines with it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead ``add`` looks for open time before it gives up (a calendar closed for longer
# than this is a configuration error, not a deadline).
HORIZON_DAYS = 3 * 366


def _span(text: str) -> str:
    """``"HH:MM-HH:MM"``, start before end, ``24:00`` only as an end."""
    try:
        start, end = text.split("-")
        a, b = _minutes(start), _minutes(end)
    except ValueError:
        raise ValueError(f"{text!r}: write working hours as 'HH:MM-HH:MM'") from None
    if not 0 <= a < b <= 24 * 60 or a == 24 * 60:
        raise ValueError(f"{text!r}: the start must come before the end, within one day")
    return text


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.strip().split(":")
    if len(minutes) != 2 or not (0 <= int(minutes) < 60) or not (0 <= int(hours) <= 24):
        raise ValueError(hhmm)
    value = int(hours) * 60 + int(minutes)
    if value > 24 * 60:
        raise ValueError(hhmm)
    return value


Span = Annotated[str, AfterValidator(_span)]
Hours = dict[Weekday, list[Span]]


def _no_overlaps(hours: Hours) -> Hours:
    for day, spans in hours.items():
        bounds = sorted((_minutes(s.split("-")[0]), _minutes(s.split("-")[1])) for s in spans)
        for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False):
            if start < end:
                raise ValueError(f"{day}: working hours overlap ({', '.join(spans)})")
    return hours


class Extended(BaseModel):
    """From ``from`` to ``to`` (both included), the weekdays named in ``hours`` work these hours
    instead of their usual ones (``"sun": ["00:00-24:00"]`` in December, say); the others
    keep theirs. ``"sat": []`` closes Saturdays for the period."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    hours: Annotated[Hours, AfterValidator(_no_overlaps)]

    @model_validator(mode="after")
    def _ordered(self) -> Extended:
        if self.to < self.from_:
            raise ValueError(f"extended hours end ({self.to}) before they start ({self.from_})")
        return self


class Calendar(BaseModel):
    model_config = ConfigDict(frozen=True)

    timezone: str
    holidays_country: str | None = None
    hours: Annotated[Hours, AfterValidator(_no_overlaps)]
    closed_dates: frozenset[date] = frozenset()
    extended: tuple[Extended, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("holidays_country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in holidays.list_supported_countries():
            raise ValueError(f"no public holidays known for country {value!r}")
        return value.upper() if value else None

    @model_validator(mode="after")
    def _open_some_time(self) -> Calendar:
        if not any(self.hours.get(day) for day in WEEKDAYS):
            raise ValueError("the calendar has no working hours in its week")
        return self

    def is_closed(self, day: date) -> bool:
        """The whole local date is off: a closed date or a public holiday."""
        if day in self.closed_dates:
            return True
        return self.holidays_country is not None and day in _holidays(
            self.holidays_country, day.year
        )

    def spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open intervals of a local date, as UTC instants, in order."""
        if self.is_closed(day):
            return []
        weekday = WEEKDAYS[day.weekday()]
        texts = self.hours.get(weekday, [])
        for period in self.extended:
            if period.from_ <= day <= period.to and weekday in period.hours:
                texts = period.hours[weekday]
                break
        zone = ZoneInfo(self.timezone)
        out = []
        for text in sorted(texts, key=lambda s: _minutes(s.split("-")[0])):
            start, end = (_minutes(part) for part in text.split("-"))
            opens, closes = _instant(day, start, zone), _instant(day, end, zone)
            if opens < closes:  # hours that fall into a DST gap are no time at all
                out.append((opens, closes))
        return out


@lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=year))


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """Local wall-clock ``minutes`` after midnight of ``day`` (24:00 is the next midnight)."""
    if minutes == 24 * 60:
        day, minutes = day + timedelta(days=1), 0
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    # A wall-clock time in a DST gap has no instant; zoneinfo reads it with the offset before
    # the change, which is where the clocks jumped from.
    return local.astimezone(UTC)


def _local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def add(calendar: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The first instant at which ``duration`` of open time has passed since ``start``."""
    if duration < timedelta(0):
        raise ValueError("a business duration cannot be negative")
    start = start.astimezone(UTC)
    if duration == timedelta(0):
        return start
    zone = ZoneInfo(calendar.timezone)
    remaining = duration
    # Start one local day early: an interval of yesterday may still be open (a night shift).
    day = _local_date(start, zone) - timedelta(days=1)
    for _ in range(HORIZON_DAYS):
        for opens, closes in calendar.spans(day):
            if closes <= start:
                continue
            begin = max(opens, start)
            available = closes - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day += timedelta(days=1)
    raise ValueError(f"the calendar has no open time for {HORIZON_DAYS} days after {start}")


def between(calendar: Calendar, start: datetime, end: datetime) -> timedelta:
    """Open time in ``[start, end)``; zero when ``end`` is not after ``start``."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return timedelta(0)
    zone = ZoneInfo(calendar.timezone)
    total = timedelta(0)
    day = _local_date(start, zone) - timedelta(days=1)
    last = _local_date(end, zone)
    while day <= last:
        for opens, closes in calendar.spans(day):
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta(0):
                total += overlap
        day += timedelta(days=1)
    return total


def resolved_calendar(calendar: Calendar, start: date, years: int = 3) -> Calendar:
    """The calendar with its public holidays written out as closed dates, from ``start``'s year
    on, and no holiday lookup left.

    A case's or a contact's workflow carries this one: its deadlines then never depend on the
    ``holidays`` package at replay time (an upgrade that changes a holiday cannot change a
    running conversation's history), and no lookup runs inside the workflow sandbox.
    """
    if calendar.holidays_country is None:
        return calendar
    closed = set(calendar.closed_dates)
    for year in range(start.year, start.year + years):
        closed |= set(holidays.country_holidays(calendar.holidays_country, years=year))
    return calendar.model_copy(update={"holidays_country": None, "closed_dates": frozenset(closed)})


def describe_due(calendar: Calendar, moment: datetime) -> str:
    """``Tue 03 Nov 16:00 Amsterdam``: a deadline as a person in the calendar's time zone reads
    it."""
    local = moment.astimezone(ZoneInfo(calendar.timezone))
    place = calendar.timezone.rsplit("/", 1)[-1].replace("_", " ")
    return f"{local:%a %d %b %H:%M} {place}"
