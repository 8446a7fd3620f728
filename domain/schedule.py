"""Production cutoff arithmetic: when do a facility's collected files next go to production?

Pure functions (no I/O beyond ``zoneinfo``'s own time-zone cache, no clock): the caller passes
the instant to start from, so a Temporal workflow can call them with ``workflow.now()`` and stay
deterministic. Only the standard library and the pydantic models of :mod:`domain.facilities` are
imported, which keeps the module usable inside the workflow sandbox.

Daily schedules are local wall-clock times. Daylight saving time is handled so that every
configured time fires exactly once on every local date:

* a time that does not exist on a spring-forward day (02:30 in Europe/Berlin on the last Sunday
  of March) fires at the wall time shifted by the length of the gap (03:30 CEST), which is the
  instant Python's ``fold=0`` gives: the nominal time read with the offset in force before the
  gap;
* a time that happens twice on a fall-back day fires at its first occurrence (``fold=0``).

Whether the ordinary or the peak times apply is decided by the month of the local date the time
belongs to, so the year end and the peak season boundaries need no special case. On a
spring-forward day two configured times can land on the same instant (02:30 and 03:30 in
Berlin); they then fire once, together: a cutoff is an instant, not a per-time event.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.facilities import FacilityInfo, StoredSchedule

__all__ = ["cutoffs_between", "describe_cutoff", "next_cutoff"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _zone(key: str) -> ZoneInfo:
    """``ZoneInfo(key)`` that also works when this module is imported inside Temporal's sandbox.

    There ``zoneinfo.ZoneInfo`` is a restriction proxy, and calling it returns the zone wrapped
    in a proxy as well, which ``datetime`` rejects ("tzinfo argument must be None or of a tzinfo
    subclass"). A bound method's ``__self__`` is the real object either way, so this is a no-op
    outside the sandbox and an unwrap inside it (workflow code that imports this module through
    ``imports_passed_through()`` never sees a proxy at all).
    """
    zone = ZoneInfo(key)
    real: ZoneInfo = getattr(zone.utcoffset, "__self__", zone)
    return real


def _require_aware(value: datetime, name: str) -> datetime:
    """Return ``value`` in UTC; a naive datetime is an error because its instant is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _cutoffs_on(schedule: StoredSchedule, zone: ZoneInfo, day: date) -> list[datetime]:
    """The UTC instants of the configured times of one local date (one per time, in order).

    ``datetime(..., tzinfo=zone)`` has ``fold=0``, which maps a repeated wall time to its first
    occurrence and a missing one to the instant shifted by the gap: exactly the rules above.
    """
    instants = []
    for hhmm in schedule.times_for_month(day.month):
        hour, minute = int(hhmm[:2]), int(hhmm[3:5])
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        instants.append(local.astimezone(UTC))
    return instants


def _next_every(every_seconds: int, after: datetime) -> datetime:
    """The first multiple of ``every_seconds`` since the epoch strictly after ``after`` (UTC).

    Integer microseconds, not float timestamps, so there is no rounding at any distance from
    the epoch.
    """
    step = every_seconds * 1_000_000
    elapsed = (after - _EPOCH) // _MICROSECOND
    return _EPOCH + (elapsed // step + 1) * step * _MICROSECOND


def next_cutoff(schedule: StoredSchedule, timezone: str, after: datetime) -> datetime:
    """The first cutoff strictly after ``after`` (aware, any zone), as an aware UTC datetime.

    "Strictly" matters: an order that becomes ready exactly at a cutoff has missed that batch
    and goes with the next one, so repeated calls always make progress.
    """
    after_utc = _require_aware(after, "after")
    if schedule.every_seconds is not None:
        return _next_every(schedule.every_seconds, after_utc)
    zone = _zone(timezone)
    today = after_utc.astimezone(zone).date()
    # Every date has at least one time, so one of these four dates has a cutoff after `after`.
    # The day before is included because a DST shift can move a time past local midnight.
    return min(
        instant
        for offset in range(-1, 3)
        for instant in _cutoffs_on(schedule, zone, today + timedelta(days=offset))
        if instant > after_utc
    )


def cutoffs_between(
    schedule: StoredSchedule, timezone: str, start: datetime, end: datetime
) -> list[datetime]:
    """All cutoffs in ``(start, end]``, ascending, distinct, in UTC.

    Work grows with the length of the range (one step per local date or per ``every_seconds``
    batch), so keep ranges sensible for short ``every_seconds`` schedules.
    """
    start_utc = _require_aware(start, "start")
    end_utc = _require_aware(end, "end")
    if end_utc <= start_utc:
        return []
    if schedule.every_seconds is not None:
        step = timedelta(seconds=schedule.every_seconds)
        result = []
        instant = _next_every(schedule.every_seconds, start_utc)
        while instant <= end_utc:
            result.append(instant)
            instant += step
        return result
    zone = _zone(timezone)
    first = start_utc.astimezone(zone).date() - timedelta(days=1)
    last = end_utc.astimezone(zone).date() + timedelta(days=1)
    found: set[datetime] = set()
    for offset in range((last - first).days + 1):
        for instant in _cutoffs_on(schedule, zone, first + timedelta(days=offset)):
            if start_utc < instant <= end_utc:
                found.add(instant)
    return sorted(found)


def describe_cutoff(facility: FacilityInfo, at: datetime) -> str:
    """Short text for the Temporal Web UI: ``"Oslo cutoff 2026-11-23 00:00 CET"``.

    Operators think in the facility's local time, so the time is shown there with the zone's
    abbreviation (or its offset, for zones without one). Seconds appear only when they are not
    zero, which happens with ``every_seconds`` schedules.
    """
    local = _require_aware(at, "at").astimezone(_zone(facility.timezone))
    fmt = "%Y-%m-%d %H:%M" if not (local.second or local.microsecond) else "%Y-%m-%d %H:%M:%S"
    return f"{facility.name} cutoff {local.strftime(fmt)} {local.tzname()}"
