"""When a schedule fires next: pure computation over wall-clock times in a time zone.

``next_run(schedule, after, anchor=...)`` is the one entry point; the catalog shows its
answer as a job's next run and the scheduler service fires it. No I/O, no clock reads:
the caller passes ``after`` (the last fire, or now) and ``anchor`` (when the schedule
was set: the job's creation, or its last edit). Every call does a bounded amount of
work (a few days, weeks or at most 13 months are looked at), so evaluating thousands of
jobs is cheap.

Rules, shared by every kind (see ``docs/schedules.md``):

- the answer is strictly after ``after`` and at or after ``anchor``;
- a wall-clock time that does not exist (DST spring-forward gap) fires at the end of the
  gap, the first instant that exists; an ambiguous one (fall-back) fires once, at its
  first occurrence; several times that land on the same instant fire once;
- a chosen day of the month past the month's end (29-31) fires on its last day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from edgeback_core.messages.schedule import (
    WEEKDAYS,
    Daily,
    Hourly,
    Immediate,
    Manual,
    MonthDays,
    Monthly,
    MonthWeekdays,
    Once,
    Schedule,
    Weekly,
    check_time_zone,
)

_TICK = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
_NTH_WEEK = {"first": 0, "second": 1, "third": 2, "fourth": 3}


def next_run(schedule: Schedule, after: datetime, *, anchor: datetime) -> datetime | None:
    """The first fire of ``schedule`` strictly after ``after``, or None if it never fires again.

    ``after`` and ``anchor`` are aware datetimes; the answer is an aware UTC datetime.
    ``anchor`` is when the schedule was set (job created or schedule edited): nothing
    fires before it, ``immediate`` fires exactly at it, ``daily`` counts its N days from
    the first ``at`` at or after it, ``weekly`` counts its N weeks from the (Monday to
    Sunday) week that holds it. ``hourly`` counts from its window's start every day, and
    ``manual`` never fires.
    """
    after, anchor = _utc(after, "after"), _utc(anchor, "anchor")
    # fires are > floor, i.e. strictly after `after` and at or after `anchor`
    floor = max(after, anchor - _TICK)
    found: datetime | None
    match schedule:
        case Manual():
            found = None
        case Immediate():
            found = anchor
        case Once():
            found = _once_instant(schedule)
        case Hourly():
            found = _next_hourly(schedule, floor)
        case Daily():
            found = _next_daily(schedule, floor, anchor)
        case Weekly():
            found = _next_weekly(schedule, floor, anchor)
        case Monthly():
            found = _next_monthly(schedule, floor)
    return found if found is not None and found > floor else None


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``zone``.

    Ambiguous (fall-back): the first occurrence. Nonexistent (spring-forward): the end of
    the gap, the first instant that exists after it. Non-decreasing in ``(day, at)``.
    """
    wall = datetime.combine(day, at)
    # zoneinfo's fold=0 applies the offset in force before a transition: for a time in a
    # gap that lands after the gap, with fold=1 before it
    later = wall.replace(tzinfo=zone).astimezone(UTC)
    if later.astimezone(zone).replace(tzinfo=None) == wall:
        return later
    earlier = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _transition_between(earlier, later, zone)


def _transition_between(earlier: datetime, later: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in (earlier, later] with ``later``'s UTC offset (whole seconds)."""
    offset = later.astimezone(zone).utcoffset()
    low, high = 0, int((later - earlier).total_seconds())
    while high - low > 1:  # at most ~17 rounds: no gap is longer than a day
        mid = (low + high) // 2
        if (earlier + timedelta(seconds=mid)).astimezone(zone).utcoffset() == offset:
            high = mid
        else:
            low = mid
    return earlier + timedelta(seconds=high)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _once_instant(schedule: Once) -> datetime:
    if schedule.at.tzinfo is not None:
        return schedule.at.astimezone(UTC)
    zone = check_time_zone(schedule.tz)
    return local_instant(schedule.at.date(), schedule.at.time(), zone)


def _seconds(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def _clock(seconds: int) -> time:
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60)


def _next_hourly(schedule: Hourly, floor: datetime) -> datetime:
    zone = check_time_zone(schedule.tz)
    local = floor.astimezone(zone)
    # a fire on day d is at or after d's first instant, so earlier days cannot be > floor;
    # day d+1 always has one (its window's start), d+2 only matters around odd gaps
    for shift in range(3):
        day = local.date() + shift * _DAY
        found = _hourly_on(schedule, day, zone, floor, local if shift == 0 else None)
        if found is not None:
            return found
    raise AssertionError(f"no hourly fire within 3 days after {floor}")  # pragma: no cover


def _hourly_on(
    schedule: Hourly, day: date, zone: ZoneInfo, floor: datetime, local: datetime | None
) -> datetime | None:
    """The first slot of ``day``'s window whose instant is > floor."""
    start, step = _seconds(schedule.start), schedule.step_seconds
    last = (_seconds(schedule.end) - start) // step

    def at(k: int) -> datetime:
        return local_instant(day, _clock(start + k * step), zone)

    # the first slot after the floor's wall clock (the first slot on a later day);
    # checked, since around a DST change wall clock and instants disagree
    wall = -1 if local is None else _seconds(local.time())
    guess = min(max(-((start - wall - 1) // step), 0), last + 1)
    if guess <= last:
        found = at(guess)
        if found > floor and (guess == 0 or at(guess - 1) <= floor):
            return found
    if at(last) <= floor:
        return None
    low, high = -1, last  # at(high) > floor; at(low) <= floor (slot -1 stands for "none")
    while high - low > 1:
        mid = (low + high) // 2
        if at(mid) > floor:
            high = mid
        else:
            low = mid
    return at(high)


def _next_daily(schedule: Daily, floor: datetime, anchor: datetime) -> datetime:
    zone = check_time_zone(schedule.tz)
    day0 = anchor.astimezone(zone).date()
    if local_instant(day0, schedule.at, zone) < anchor:
        day0 += _DAY
    since = max((floor.astimezone(zone).date() - day0).days, 0)
    k = -(-since // schedule.every)
    while True:  # at most two rounds: the floor's day, then the next fire day
        found = local_instant(day0 + k * schedule.every * _DAY, schedule.at, zone)
        if found > floor:
            return found
        k += 1


def _next_weekly(schedule: Weekly, floor: datetime, anchor: datetime) -> datetime:
    zone = check_time_zone(schedule.tz)
    first_day = anchor.astimezone(zone).date()
    week0 = first_day - first_day.weekday() * _DAY
    day = max(floor.astimezone(zone).date(), first_day)
    weekdays = sorted(WEEKDAYS.index(name) for name in schedule.weekdays)
    weeks = ((day - week0).days // 7 + schedule.every - 1) // schedule.every * schedule.every
    monday = week0 + weeks * _WEEK
    day = max(day, monday)
    while True:  # at most two rounds: this fire week, then the next one
        for weekday in weekdays:
            when = monday + weekday * _DAY
            if when >= day and (found := local_instant(when, schedule.at, zone)) > floor:
                return found
        monday += schedule.every * _WEEK


def _next_monthly(schedule: Monthly, floor: datetime) -> datetime:
    zone = check_time_zone(schedule.tz)
    first_day = floor.astimezone(zone).date()
    for year, month in _months_from(first_day.year, first_day.month, 13):
        if month not in schedule.months:
            continue
        for day in month_days(schedule.on, year, month):
            if day >= first_day and (found := local_instant(day, schedule.at, zone)) > floor:
                return found
    # every month has a "last" weekday and a fourth one, and day rules clamp: unreachable
    raise AssertionError(f"no monthly fire within 13 months after {floor}")  # pragma: no cover


def _months_from(year: int, month: int, count: int) -> Iterator[tuple[int, int]]:
    for index in range(year * 12 + month - 1, year * 12 + month - 1 + count):
        yield divmod(index, 12)[0], index % 12 + 1


def _month_length(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - date(year, month, 1)).days


def month_days(rule: MonthDays | MonthWeekdays, year: int, month: int) -> list[date]:
    """The days of ``year``-``month`` that ``rule`` chooses, sorted, each once.

    Days past the month's end (29-31 in short months) become its last day.
    """
    length = _month_length(year, month)
    if isinstance(rule, MonthDays):
        return [date(year, month, day) for day in sorted({min(d, length) for d in rule.days})]
    first_weekday = date(year, month, 1).weekday()
    last_weekday = (first_weekday + length - 1) % 7
    days: set[int] = set()
    for name in rule.weekdays:
        weekday = WEEKDAYS.index(name)
        first = 1 + (weekday - first_weekday) % 7
        for week in rule.weeks:
            if week == "last":
                days.add(length - (last_weekday - weekday) % 7)
            else:
                days.add(first + 7 * _NTH_WEEK[week])
    return [date(year, month, day) for day in sorted(days)]
