"""Time-of-day speed limits: the pure window rule and the throttle that follows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_blocks.pipeline.rate_windows import RateWindow, WindowedThrottle, rate_at
from edgeback_core.errors import InvalidInputError

MIB = 1024 * 1024
SHANGHAI = ZoneInfo("Asia/Shanghai")


def w(start: str, end: str, rate: int) -> RateWindow:
    return RateWindow(
        start=clock_time.fromisoformat(start), end=clock_time.fromisoformat(end), bytes_per_s=rate
    )


def test_inside_a_window_its_rate_applies_and_outside_there_is_no_limit() -> None:
    windows = [w("08:00", "18:00", 10 * MIB)]
    assert rate_at(windows, clock_time(8, 0)) == 10 * MIB
    assert rate_at(windows, clock_time(17, 59, 59)) == 10 * MIB
    assert rate_at(windows, clock_time(18, 0)) == 0
    assert rate_at(windows, clock_time(7, 59)) == 0


def test_a_window_that_wraps_midnight_covers_both_sides() -> None:
    windows = [w("22:00", "06:00", 5 * MIB)]
    assert rate_at(windows, clock_time(23, 30)) == 5 * MIB
    assert rate_at(windows, clock_time(0, 0)) == 5 * MIB
    assert rate_at(windows, clock_time(5, 59)) == 5 * MIB
    assert rate_at(windows, clock_time(6, 0)) == 0
    assert rate_at(windows, clock_time(12, 0)) == 0


def test_the_first_matching_window_wins_and_zero_means_unlimited() -> None:
    windows = [w("12:00", "13:00", 0), w("08:00", "18:00", 10 * MIB)]
    assert rate_at(windows, clock_time(12, 30)) == 0
    assert rate_at(windows, clock_time(11, 0)) == 10 * MIB


def test_equal_start_and_end_is_the_whole_day() -> None:
    assert rate_at([w("00:00", "00:00", 7)], clock_time(13, 14)) == 7


def test_bad_windows_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        w("01:00", "02:00", -1)
    with pytest.raises(InvalidInputError):
        RateWindow(start=clock_time(1, tzinfo=UTC), end=clock_time(2), bytes_per_s=1)


times = st.times()


@given(start=times, end=times, moment=times)
def test_a_window_covers_exactly_its_half_open_interval(
    start: clock_time, end: clock_time, moment: clock_time
) -> None:
    window = RateWindow(start=start, end=end, bytes_per_s=1)
    if start == end:
        expected = True
    elif start < end:
        expected = start <= moment < end
    else:  # the complement of [end, start)
        expected = not (end <= moment < start)
    assert window.covers(moment) is expected


class FakeTime:
    """Wall clock (for the windows) and monotonic clock (for the bucket) moving together."""

    def __init__(self, start: datetime) -> None:
        self.wall = start
        self.mono = 0.0
        self.slept: list[float] = []

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


async def test_the_throttle_follows_the_window_in_the_hosts_time_zone() -> None:
    # 09:00 in Shanghai is 01:00 UTC: the 08:00-18:00 window is open
    fake = FakeTime(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    throttle = WindowedThrottle(
        [w("08:00", "18:00", 4 * MIB)],
        SHANGHAI,
        now=lambda: fake.wall,
        clock=lambda: fake.mono,
        sleep=fake.sleep,
    )
    assert throttle.current_rate() == 4 * MIB
    for _ in range(5):  # burst (4 MiB) then 4 MiB/s
        await throttle.acquire(4 * MIB)
    assert sum(fake.slept) == pytest.approx(4.0)
    fake.advance(9 * 3600)  # 18:00 local: the window closed, no more waiting
    fake.slept.clear()
    for _ in range(10):
        await throttle.acquire(4 * MIB)
    assert throttle.current_rate() == 0
    assert fake.slept == []


async def test_a_window_opening_mid_transfer_retunes_the_bucket() -> None:
    fake = FakeTime(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))  # 09:00 local
    windows = [w("09:00", "10:00", 8 * MIB), w("10:00", "11:00", 2 * MIB)]
    throttle = WindowedThrottle(
        windows, SHANGHAI, now=lambda: fake.wall, clock=lambda: fake.mono, sleep=fake.sleep
    )
    await throttle.acquire(8 * MIB)  # the burst
    fake.advance(3600)  # 10:00: the slower window
    fake.slept.clear()
    for _ in range(4):  # the bucket refilled to its new burst (4 MiB), then 2 MiB/s
        await throttle.acquire(2 * MIB)
    assert throttle.current_rate() == 2 * MIB
    assert sum(fake.slept) == pytest.approx(2.0)
