"""next_run, kind by kind, on a clock the test sets: month ends, leap days, both DST changes.

Expected instants are written as UTC next to the wall-clock time they stand for, so a
reader can check each line against a time-zone table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from edgeback_core.messages.schedule import (
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
)
from edgeback_core.schedules import local_instant, month_days, next_run

BERLIN, NEW_YORK, SHANGHAI = "Europe/Berlin", "America/New_York", "Asia/Shanghai"
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type,misc]


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    wall = datetime(*args, tzinfo=ZoneInfo(tz), fold=fold)  # type: ignore[arg-type,misc]
    return wall.astimezone(UTC)


def fires(
    schedule: Schedule, after: datetime, count: int, anchor: datetime = EPOCH
) -> list[datetime]:
    """The next ``count`` fires, as a scheduler would see them firing one after the other."""
    found: list[datetime] = []
    while len(found) < count:
        at = next_run(schedule, after, anchor=anchor)
        if at is None:
            break
        found.append(at)
        after = at
    return found


def walls(tz: str, instants: list[datetime]) -> list[str]:
    return [i.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M %z") for i in instants]


# --- manual, immediate, once ------------------------------------------------------------
def test_manual_never_fires() -> None:
    assert next_run(Manual(), utc(2025, 1, 1), anchor=utc(2024, 1, 1)) is None
    assert next_run(Manual(), utc(2000, 1, 1), anchor=utc(2024, 1, 1)) is None


def test_immediate_fires_once_at_its_anchor() -> None:
    anchor = utc(2025, 5, 1, 12, 0, 7)
    assert next_run(Immediate(), utc(2025, 5, 1), anchor=anchor) == anchor
    assert next_run(Immediate(), anchor - timedelta(microseconds=1), anchor=anchor) == anchor
    assert next_run(Immediate(), anchor, anchor=anchor) is None  # after its first run
    assert next_run(Immediate(), utc(2026, 1, 1), anchor=anchor) is None


def test_once_at_a_wall_time_of_its_zone_and_never_again() -> None:
    once = Once(tz=SHANGHAI, at=datetime(2025, 3, 1, 2, 0))
    assert next_run(once, utc(2025, 1, 1), anchor=EPOCH) == utc(2025, 2, 28, 18)
    assert next_run(once, utc(2025, 2, 28, 18), anchor=EPOCH) is None  # fired
    assert next_run(once, utc(2025, 1, 1), anchor=utc(2025, 3, 1)) is None  # set afterwards


def test_once_with_an_offset_is_that_instant() -> None:
    at = datetime(2025, 7, 1, 9, 30, tzinfo=ZoneInfo(NEW_YORK))
    once = Once(tz=SHANGHAI, at=at)
    assert next_run(once, utc(2025, 1, 1), anchor=EPOCH) == utc(2025, 7, 1, 13, 30)


def test_once_in_a_gap_moves_to_its_end_and_ambiguous_takes_the_first() -> None:
    gap = Once(tz=BERLIN, at=datetime(2025, 3, 30, 2, 30))
    assert next_run(gap, EPOCH, anchor=EPOCH) == utc(2025, 3, 30, 1)  # 03:00 CEST
    fold = Once(tz=NEW_YORK, at=datetime(2025, 11, 2, 1, 30))
    assert next_run(fold, EPOCH, anchor=EPOCH) == utc(2025, 11, 2, 5, 30)  # 01:30 EDT


# --- hourly -----------------------------------------------------------------------------
def test_hourly_fires_inside_its_window_end_included_then_next_day() -> None:
    every2 = Hourly(tz=SHANGHAI, start=time(8), end=time(18), every=2)
    got = fires(every2, local(SHANGHAI, 2025, 1, 31, 15), 5)
    assert walls(SHANGHAI, got) == [
        "01-31 16:00 +0800",
        "01-31 18:00 +0800",
        "02-01 08:00 +0800",  # across the month end
        "02-01 10:00 +0800",
        "02-01 12:00 +0800",
    ]


def test_hourly_in_minutes_keeps_the_grid_from_the_window_start() -> None:
    every45 = Hourly(tz=SHANGHAI, start=time(9, 10), end=time(11), every=45, unit="minutes")
    got = fires(every45, local(SHANGHAI, 2024, 2, 28, 10, 0, 0), 5)
    assert walls(SHANGHAI, got) == [
        "02-28 10:40 +0800",
        "02-29 09:10 +0800",  # the leap day
        "02-29 09:55 +0800",
        "02-29 10:40 +0800",
        "03-01 09:10 +0800",
    ]


def test_hourly_mid_slot_clock_reading_gives_the_next_slot() -> None:
    every3 = Hourly(tz=SHANGHAI, start=time(1), end=time(23), every=3)
    assert next_run(every3, local(SHANGHAI, 2025, 6, 1, 4, 0, 0), anchor=EPOCH) == local(
        SHANGHAI, 2025, 6, 1, 7
    )
    assert next_run(every3, local(SHANGHAI, 2025, 6, 1, 3, 59, 59), anchor=EPOCH) == local(
        SHANGHAI, 2025, 6, 1, 4
    )


@pytest.mark.parametrize(
    ("tz", "day", "start", "expected"),
    [
        # spring: Berlin 02:00 CET -> 03:00 CEST; the 02:00 slot fires at 03:00, once
        (BERLIN, (2025, 3, 30), 0, ["00:00 +0100", "01:00 +0100", "03:00 +0200", "04:00 +0200"]),
        # spring: New York 02:00 EST -> 03:00 EDT
        (NEW_YORK, (2025, 3, 9), 0, ["00:00 -0500", "01:00 -0500", "03:00 -0400", "04:00 -0400"]),
        # fall: Berlin 03:00 CEST -> 02:00 CET; 02:00 happens twice and fires once
        (BERLIN, (2025, 10, 26), 1, ["01:00 +0200", "02:00 +0200", "03:00 +0100", "04:00 +0100"]),
        # fall: New York 02:00 EDT -> 01:00 EST
        (NEW_YORK, (2025, 11, 2), 0, ["00:00 -0400", "01:00 -0400", "02:00 -0500", "03:00 -0500"]),
    ],
)
def test_hourly_through_both_dst_changes(
    tz: str, day: tuple[int, int, int], start: int, expected: list[str]
) -> None:
    hourly = Hourly(tz=tz, start=time(start), end=time(start + 4), every=1)
    got = fires(hourly, local(tz, *day) - timedelta(seconds=1), 4)
    assert [w[6:] for w in walls(tz, got)] == expected


def test_hourly_every_minutes_through_the_fall_back_hour_skips_the_repeat() -> None:
    half = Hourly(tz=BERLIN, start=time(2), end=time(3), every=30, unit="minutes")
    got = fires(half, local(BERLIN, 2025, 10, 26, 1), 4)
    steps = [timedelta(0), timedelta(minutes=30), timedelta(hours=2), timedelta(days=1, hours=1)]
    assert [g - got[0] for g in got] == steps


# --- daily ------------------------------------------------------------------------------
def test_daily_across_a_leap_day_and_a_year_end() -> None:
    daily = Daily(tz=SHANGHAI, at=time(2))
    got = fires(daily, local(SHANGHAI, 2024, 2, 28, 3), 3)
    assert walls(SHANGHAI, got) == ["02-29 02:00 +0800", "03-01 02:00 +0800", "03-02 02:00 +0800"]
    got = fires(daily, local(SHANGHAI, 2024, 12, 31, 1), 2)
    assert walls(SHANGHAI, got) == ["12-31 02:00 +0800", "01-01 02:00 +0800"]


def test_daily_every_n_days_counts_from_the_first_time_at_or_after_the_anchor() -> None:
    every3 = Daily(tz=SHANGHAI, at=time(2), every=3)
    late = local(SHANGHAI, 2025, 1, 30, 10)  # after 02:00: day 0 is Jan 31
    assert walls(SHANGHAI, fires(every3, late, 3, anchor=late)) == [
        "01-31 02:00 +0800",
        "02-03 02:00 +0800",
        "02-06 02:00 +0800",
    ]
    early = local(SHANGHAI, 2025, 1, 30, 1)  # before 02:00: day 0 is Jan 30
    assert walls(SHANGHAI, fires(every3, early, 2, anchor=early)) == [
        "01-30 02:00 +0800",
        "02-02 02:00 +0800",
    ]
    # a clock far ahead of the anchor stays on the same 3-day grid
    assert walls(SHANGHAI, fires(every3, local(SHANGHAI, 2025, 3, 1), 1, anchor=late)) == [
        "03-02 02:00 +0800"  # Jan 31 + 30 days
    ]


@pytest.mark.parametrize(
    ("tz", "spring", "fall"),
    [(BERLIN, (2025, 3, 30), (2025, 10, 26)), (NEW_YORK, (2025, 3, 9), (2025, 11, 2))],
)
def test_daily_through_both_dst_changes(
    tz: str, spring: tuple[int, int, int], fall: tuple[int, int, int]
) -> None:
    at = time(2, 30) if tz == BERLIN else time(1, 30)
    daily = Daily(tz=tz, at=at)
    got = fires(daily, local(tz, *spring) - timedelta(days=1), 3)
    usual = at.strftime("%H:%M")
    on_the_day = "03:00" if tz == BERLIN else usual  # 02:30 does not exist in Berlin that day
    assert [w[6:11] for w in walls(tz, got)] == [usual, on_the_day, usual]
    got = fires(daily, local(tz, *fall) - timedelta(hours=12), 3)
    assert len({g.astimezone(ZoneInfo(tz)).date() for g in got}) == 3  # once per day
    assert got[0] == local(tz, *fall, at.hour, at.minute, fold=0)  # the first occurrence


def test_daily_new_york_spring_gap_moves_to_three() -> None:
    daily = Daily(tz=NEW_YORK, at=time(2, 15))
    assert next_run(daily, utc(2025, 3, 9), anchor=EPOCH) == utc(2025, 3, 9, 7)  # 03:00 EDT


# --- weekly -----------------------------------------------------------------------------
def test_weekly_every_two_weeks_counts_from_the_anchor_week() -> None:
    weekly = Weekly(tz=SHANGHAI, at=time(9), weekdays=("fri", "mon"), every=2)
    anchor = local(SHANGHAI, 2025, 12, 24, 12)  # a Wednesday: week 0 is Dec 22-28
    got = fires(weekly, anchor, 5, anchor=anchor)
    assert [g.astimezone(ZoneInfo(SHANGHAI)).date() for g in got] == [
        date(2025, 12, 26),  # Fri of week 0
        date(2026, 1, 5),  # Mon of week 2, across the year end
        date(2026, 1, 9),
        date(2026, 1, 19),
        date(2026, 1, 23),
    ]


def test_weekly_on_a_leap_day_and_a_monday_already_past() -> None:
    weekly = Weekly(tz=SHANGHAI, at=time(23, 59, 59), weekdays=("thu",))
    got = fires(weekly, local(SHANGHAI, 2024, 2, 22, 23, 59, 59), 2)
    assert walls(SHANGHAI, got) == ["02-29 23:59 +0800", "03-07 23:59 +0800"]


def test_weekly_on_the_sunday_of_the_change_in_both_zones() -> None:
    berlin = Weekly(tz=BERLIN, at=time(2, 30), weekdays=("sun",))
    assert next_run(berlin, utc(2025, 3, 24), anchor=EPOCH) == utc(2025, 3, 30, 1)  # 03:00 CEST
    assert next_run(berlin, utc(2025, 10, 20), anchor=EPOCH) == utc(2025, 10, 26, 0, 30)
    york = Weekly(tz=NEW_YORK, at=time(1, 30), weekdays=("sun",))
    assert next_run(york, utc(2025, 11, 1), anchor=EPOCH) == utc(2025, 11, 2, 5, 30)  # EDT
    assert next_run(york, utc(2025, 11, 2, 5, 30), anchor=EPOCH) == utc(2025, 11, 9, 6, 30)


# --- monthly ----------------------------------------------------------------------------
def test_monthly_day_31_falls_on_each_month_s_last_day() -> None:
    monthly = Monthly(tz=SHANGHAI, at=time(2), months=tuple(range(1, 13)), on=MonthDays(days=(31,)))
    got = fires(monthly, local(SHANGHAI, 2024, 1, 1), 5)
    assert [g.astimezone(ZoneInfo(SHANGHAI)).date().isoformat() for g in got] == [
        "2024-01-31",
        "2024-02-29",  # leap year
        "2024-03-31",
        "2024-04-30",
        "2024-05-31",
    ]
    feb = Monthly(tz=SHANGHAI, at=time(2), months=(2,), on=MonthDays(days=(29, 30, 31)))
    got = fires(feb, local(SHANGHAI, 2023, 1, 1), 3)
    assert [g.astimezone(ZoneInfo(SHANGHAI)).date().isoformat() for g in got] == [
        "2023-02-28",  # 29, 30 and 31 become one fire on the 28th
        "2024-02-29",
        "2025-02-28",
    ]


def test_monthly_chosen_months_wrap_into_the_next_year() -> None:
    quarterly = Monthly(tz=NEW_YORK, at=time(4), months=(1, 4, 7, 10), on=MonthDays(days=(1, 15)))
    got = fires(quarterly, local(NEW_YORK, 2025, 10, 15, 4), 3)
    assert walls(NEW_YORK, got) == ["01-01 04:00 -0500", "01-15 04:00 -0500", "04-01 04:00 -0400"]


def test_monthly_by_weekday_last_sunday_is_the_dst_day_in_berlin() -> None:
    last_sunday = Monthly(
        tz=BERLIN,
        at=time(2, 30),
        months=(3, 10),
        on=MonthWeekdays(weeks=("last",), weekdays=("sun",)),
    )
    got = fires(last_sunday, utc(2025, 1, 1), 3)
    assert got == [
        utc(2025, 3, 30, 1),  # 02:30 does not exist: 03:00 CEST
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, the first of the two
        utc(2026, 3, 29, 1),
    ]


def test_month_days_by_week_of_month() -> None:
    rule = MonthWeekdays(weeks=("first", "fourth", "last"), weekdays=("mon",))
    # Feb 2021 starts on a Monday and has exactly four of them: the fourth is the last
    assert month_days(rule, 2021, 2) == [date(2021, 2, 1), date(2021, 2, 22)]
    # Mar 2024: Mondays 4, 11, 18, 25
    assert month_days(rule, 2024, 3) == [date(2024, 3, 4), date(2024, 3, 25)]
    second_fri = MonthWeekdays(weeks=("second",), weekdays=("fri", "tue"))
    assert month_days(second_fri, 2024, 2) == [date(2024, 2, 9), date(2024, 2, 13)]


# --- shared rules -----------------------------------------------------------------------
def test_nothing_fires_before_the_anchor_and_naive_clocks_are_refused() -> None:
    daily = Daily(tz=SHANGHAI, at=time(2))
    anchor = local(SHANGHAI, 2025, 6, 10, 2)
    assert next_run(daily, utc(2025, 1, 1), anchor=anchor) == anchor  # at the anchor itself
    with pytest.raises(ValueError, match="aware"):
        next_run(daily, datetime(2025, 1, 1), anchor=anchor)


def test_local_instant_at_a_whole_skipped_day() -> None:
    # Samoa skipped 30 December 2011: every wall time of it fires at the 31st's first second
    apia = ZoneInfo("Pacific/Apia")
    assert local_instant(date(2011, 12, 30), time(12), apia) == utc(2011, 12, 30, 10)
    assert local_instant(date(2011, 12, 31), time(0), apia) == utc(2011, 12, 30, 10)
