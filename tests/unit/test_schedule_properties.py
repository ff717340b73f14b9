"""Properties of next_run over generated schedules, clocks and zones (hypothesis).

Clocks are drawn near DST changes as often as anywhere else, in zones with one-hour
changes (Berlin, New York), a half-hour change (Lord Howe), none (Shanghai) and a
southern-hemisphere one that changes at midnight (Santiago).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeback_core.messages.schedule import (
    WEEKDAYS,
    WEEKS_OF_MONTH,
    Daily,
    Hourly,
    Immediate,
    IntervalUnit,
    Manual,
    MonthDays,
    Monthly,
    MonthWeekdays,
    Once,
    Schedule,
    Weekly,
)
from edgeback_core.schedules import next_run

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Shanghai",
    "Australia/Lord_Howe",
    "America/Santiago",
]
LOW, HIGH = datetime(2023, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


def _transitions(zone: ZoneInfo) -> list[datetime]:
    """Instants where the zone's UTC offset changes (test set-up only): day steps, then hours."""

    def offset(at: datetime) -> timedelta | None:
        return at.astimezone(zone).utcoffset()

    found, day = [], LOW
    while day < HIGH:
        if offset(day) != offset(day + timedelta(days=1)):
            hour = day
            while offset(hour) == offset(day):
                hour += timedelta(minutes=30)
            found.append(hour)
        day += timedelta(days=1)
    return found


TRANSITIONS = {name: _transitions(ZoneInfo(name)) for name in ZONES}


def _clocks(tz: str) -> st.SearchStrategy[datetime]:
    anywhere = st.datetimes(min_value=LOW.replace(tzinfo=None), max_value=HIGH.replace(tzinfo=None))
    near: st.SearchStrategy[datetime] = anywhere.map(lambda d: d.replace(tzinfo=UTC))
    if TRANSITIONS[tz]:
        near = st.builds(
            lambda t, s: t + timedelta(seconds=s),
            st.sampled_from(TRANSITIONS[tz]),
            st.integers(-2 * 86400, 2 * 86400),
        )
    return st.one_of(anywhere.map(lambda d: d.replace(tzinfo=UTC)), near)


# wall times biased to the hours where DST changes happen (00-03)
walls = st.builds(
    time,
    st.one_of(st.integers(0, 3), st.integers(0, 23)),
    st.sampled_from([0, 15, 30, 45]) | st.integers(0, 59),
    st.sampled_from([0, 0, 0, 59]),
)


naive_seconds = st.datetimes(LOW.replace(tzinfo=None), HIGH.replace(tzinfo=None)).map(
    lambda d: d.replace(microsecond=0)
)


def sets(values: tuple[object, ...]) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True).map(
        tuple
    )


@st.composite
def hourly(draw: st.DrawFn, tz: str) -> Hourly:
    start, end = sorted(draw(st.lists(walls, min_size=2, max_size=2, unique=True)))
    unit: IntervalUnit = draw(st.sampled_from(["hours", "minutes"]))
    every = draw(st.integers(1, 23) if unit == "hours" else st.integers(1, 240))
    return Hourly(tz=tz, start=start, end=end, every=every, unit=unit)


def _schedules(tz: str) -> st.SearchStrategy[Schedule]:
    month_rule = st.one_of(
        st.builds(MonthDays, days=sets(tuple(range(1, 32)))),
        st.builds(MonthWeekdays, weeks=sets(WEEKS_OF_MONTH), weekdays=sets(WEEKDAYS)),
    )
    return st.one_of(
        st.just(Immediate()),
        st.just(Manual()),
        st.builds(Once, tz=st.just(tz), at=naive_seconds),
        hourly(tz),
        st.builds(Daily, tz=st.just(tz), at=walls, every=st.integers(1, 10)),
        st.builds(
            Weekly, tz=st.just(tz), at=walls, weekdays=sets(WEEKDAYS), every=st.integers(1, 5)
        ),
        st.builds(
            Monthly, tz=st.just(tz), at=walls, months=sets(tuple(range(1, 13))), on=month_rule
        ),
    )


# built once per zone: building strategies inside each example costs more than the checks
CLOCKS = {tz: _clocks(tz) for tz in ZONES}
SCHEDULES = {tz: _schedules(tz) for tz in ZONES}


def clock_strategy(tz: str) -> st.SearchStrategy[datetime]:
    return CLOCKS[tz]


def schedules(tz: str) -> st.SearchStrategy[Schedule]:
    return SCHEDULES[tz]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schedule, datetime, datetime, str]:
    tz = draw(st.sampled_from(ZONES))
    return draw(schedules(tz)), draw(clock_strategy(tz)), draw(clock_strategy(tz)), tz


def run_from(schedule: Schedule, after: datetime, anchor: datetime, count: int) -> list[datetime]:
    found: list[datetime] = []
    for _ in range(count):
        at = next_run(schedule, after, anchor=anchor)
        if at is None:
            break
        found.append(at)
        after = at
    return found


def offset(at: datetime, zone: ZoneInfo) -> timedelta:
    found = at.astimezone(zone).utcoffset()
    assert found is not None
    return found


def gap_before(at: datetime, zone: ZoneInfo) -> timedelta:
    """How far the clock jumped forward just before ``at`` (zero if it did not)."""
    return max(offset(at, zone) - offset(at - timedelta(seconds=1), zone), timedelta(0))


def is_gap_end(at: datetime, zone: ZoneInfo) -> bool:
    return gap_before(at, zone) > timedelta(0)


def seconds(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


@settings(max_examples=200)
@given(cases())
def test_never_in_the_past_nor_before_the_anchor(
    case: tuple[Schedule, datetime, datetime, str],
) -> None:
    schedule, after, anchor, _ = case
    found = next_run(schedule, after, anchor=anchor)
    if found is not None:
        assert found > after
        assert found >= anchor
        assert found.tzinfo is UTC
    elif not isinstance(schedule, Manual | Once | Immediate):
        raise AssertionError("a recurring schedule always fires again")


@settings(max_examples=200)
@given(cases(), st.integers(0, 40 * 86400 * 10**6))
def test_monotonic(case: tuple[Schedule, datetime, datetime, str], later_us: int) -> None:
    schedule, after, anchor, _ = case
    first = next_run(schedule, after, anchor=anchor)
    second = next_run(schedule, after + timedelta(microseconds=later_us), anchor=anchor)
    if first is None:
        assert second is None
    elif second is not None:
        assert first <= second


@settings(max_examples=150)
@given(cases())
def test_no_fire_is_skipped(case: tuple[Schedule, datetime, datetime, str]) -> None:
    """Any clock between two fires leads to the second one: iterating misses nothing."""
    schedule, after, anchor, _ = case
    found = run_from(schedule, after, anchor, 2)
    if len(found) == 2:
        middle = found[0] + (found[1] - found[0]) / 2
        assert next_run(schedule, middle, anchor=anchor) == found[1]
        assert next_run(schedule, found[1] - timedelta(microseconds=1), anchor=anchor) == found[1]


@settings(max_examples=150)
@given(st.sampled_from(ZONES).flatmap(lambda tz: st.tuples(hourly(tz), clock_strategy(tz))))
def test_hourly_fires_on_its_grid_inside_its_window(case: tuple[Hourly, datetime]) -> None:
    schedule, after = case
    zone, step = ZoneInfo(schedule.tz), schedule.step_seconds
    start, end = seconds(schedule.start), seconds(schedule.end)
    found = run_from(schedule, after, LOW, 30)
    for at in found:
        wall = seconds(at.astimezone(zone).time())
        if start <= wall <= end and (wall - start) % step == 0:
            continue
        # a slot in a spring-forward gap fires at the gap's end: find the slot it stands for
        assert is_gap_end(at, zone), at
        gap_start = wall - int(gap_before(at, zone).total_seconds())
        assert any(gap_start <= s < wall for s in range(start, end + 1, step)), at
    for first, second in pairwise(found):
        same_day = first.astimezone(zone).date() == second.astimezone(zone).date()
        offsets = {first.astimezone(zone).utcoffset(), second.astimezone(zone).utcoffset()}
        if same_day and len(offsets) == 1 and not is_gap_end(first, zone):
            assert second - first == timedelta(seconds=step)


@settings(max_examples=150)
@given(cases())
def test_daily_weekly_monthly_fire_only_on_their_days(
    case: tuple[Schedule, datetime, datetime, str],
) -> None:
    schedule, after, anchor, tz = case
    zone = ZoneInfo(tz)
    found = run_from(schedule, after, anchor, 12)
    days = [at.astimezone(zone).date() for at in found]
    if isinstance(schedule, Daily):
        assert all((b - a).days == schedule.every for a, b in pairwise(days))
    elif isinstance(schedule, Weekly):
        first = anchor.astimezone(zone).date()
        week0 = first - timedelta(days=first.weekday())
        for day in days:
            assert WEEKDAYS[day.weekday()] in schedule.weekdays
            assert (day - week0).days // 7 % schedule.every == 0
    elif isinstance(schedule, Monthly):
        for day in days:
            assert day.month in schedule.months
            assert chosen_by(schedule.on, day)


def chosen_by(rule: MonthDays | MonthWeekdays, day: date) -> bool:
    """An independent reading of the month rules (the code under test uses its own)."""
    next_month = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    last = (next_month - timedelta(days=1)).day
    if isinstance(rule, MonthDays):
        return day.day in rule.days or (day.day == last and max(rule.days) > last)
    if WEEKDAYS[day.weekday()] not in rule.weekdays:
        return False
    nth = WEEKS_OF_MONTH[(day.day - 1) // 7] if day.day <= 28 else None
    return nth in rule.weeks or ("last" in rule.weeks and day.day + 7 > last)


@settings(max_examples=150)
@given(
    st.sampled_from([z for z in ZONES if TRANSITIONS[z]]).flatmap(
        lambda tz: st.tuples(schedules(tz), st.sampled_from(TRANSITIONS[tz]), st.just(tz))
    )
)
def test_no_duplicates_around_a_change(case: tuple[Schedule, datetime, str]) -> None:
    """From 3 hours before a change to a day after: instants increase, no wall time twice."""
    schedule, change, tz = case
    zone = ZoneInfo(tz)
    start = change - timedelta(hours=3)
    found = [at for at in run_from(schedule, start, LOW, 500) if at < change + timedelta(days=1)]
    assert found == sorted(set(found))
    wall_times = [at.astimezone(zone).replace(tzinfo=None) for at in found]
    assert len(set(wall_times)) == len(wall_times)


def reference_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Wall time to instant the slow way: a time in a gap walks forward minute by minute."""
    wall = datetime.combine(day, at)
    while wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        wall = wall.replace(second=0) + timedelta(minutes=1)
    return wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first occurrence


def reference_walls(schedule: Schedule, day: date, anchor_day0: date) -> list[time]:
    """The wall times ``schedule`` names on ``day``, read straight from the documented rules."""
    if isinstance(schedule, Hourly):
        start, end, step = seconds(schedule.start), seconds(schedule.end), schedule.step_seconds
        return [time(s // 3600, s // 60 % 60, s % 60) for s in range(start, end + 1, step)]
    if isinstance(schedule, Daily):
        return [schedule.at] if (day - anchor_day0).days % schedule.every == 0 else []
    if isinstance(schedule, Weekly):
        week0 = anchor_day0 - timedelta(days=anchor_day0.weekday())
        chosen = WEEKDAYS[day.weekday()] in schedule.weekdays
        return [schedule.at] if chosen and (day - week0).days // 7 % schedule.every == 0 else []
    assert isinstance(schedule, Monthly)
    chosen = day.month in schedule.months and chosen_by(schedule.on, day)
    return [schedule.at] if chosen else []


@settings(max_examples=150)
@given(cases())
def test_matches_a_brute_force_reading_of_the_rules(
    case: tuple[Schedule, datetime, datetime, str],
) -> None:
    schedule, after, anchor, tz = case
    if not isinstance(schedule, Hourly | Daily | Weekly | Monthly):
        return
    zone = ZoneInfo(tz)
    day0 = anchor.astimezone(zone).date()
    if isinstance(schedule, Daily) and reference_instant(day0, schedule.at, zone) < anchor:
        day0 += timedelta(days=1)  # daily counts from the first `at` at or after the anchor
    first = max(after, anchor).astimezone(zone).date() - timedelta(days=1)
    candidates = (
        reference_instant(day, at, zone)
        for day in (first + timedelta(days=n) for n in range(400))
        for at in reference_walls(schedule, day, day0)
    )
    expected = next(c for c in candidates if c > after and c >= anchor)
    assert next_run(schedule, after, anchor=anchor) == expected
