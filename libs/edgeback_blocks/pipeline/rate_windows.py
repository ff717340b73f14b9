"""Speed limits by time of day: the guide's "backup / transfer speed limit" options.

A job lists windows (local start-end, a rate in bytes per second, 0 = no limit) in the
backup host's time zone. :func:`rate_at` is the pure rule; :class:`WindowedThrottle`
is a :class:`~edgeback_core.throttle.Throttle` that re-reads the rule on
each ``acquire`` and retunes one token bucket, so a window that opens or closes in the
middle of a disk takes effect at the next chunk.

Rules: a window covers ``start <= t < end``; ``start > end`` wraps past midnight
(22:00-06:00); ``start == end`` is the whole day. Where windows overlap, the first one
in the list wins, so an operator orders them from specific to general. Outside every
window there is no limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from edgeback_core.errors import InvalidInputError
from edgeback_core.throttle import TokenBucket


@dataclass(frozen=True, slots=True, kw_only=True)
class RateWindow:
    start: clock_time
    end: clock_time
    bytes_per_s: int
    """0 means no limit inside this window."""

    def __post_init__(self) -> None:
        if self.bytes_per_s < 0:
            raise InvalidInputError("a speed limit cannot be negative", rate=self.bytes_per_s)
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidInputError("window times are local times, without a zone")

    def covers(self, moment: clock_time) -> bool:
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def rate_at(windows: Sequence[RateWindow], local: clock_time) -> int:
    """Bytes per second allowed at local time ``local``; 0 means unlimited."""
    for window in windows:
        if window.covers(local):
            return window.bytes_per_s
    return 0


class WindowedThrottle:
    """A token bucket whose rate follows ``windows`` in time zone ``zone``."""

    def __init__(
        self,
        windows: Sequence[RateWindow],
        zone: ZoneInfo,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._windows = tuple(windows)
        self._zone = zone
        self._now = now
        self._bucket: TokenBucket | None = None
        self._bucket_args = (clock, sleep)

    def current_rate(self) -> int:
        """The limit in force now, bytes per second (0: none)."""
        return rate_at(self._windows, self._now().astimezone(self._zone).time())

    async def acquire(self, nbytes: int) -> None:
        rate = self.current_rate()
        if rate == 0:
            return
        if self._bucket is None:
            clock, sleep = self._bucket_args
            self._bucket = TokenBucket(rate, clock=clock, sleep=sleep)
        elif self._bucket.rate != rate:
            self._bucket.set_rate(rate)
        await self._bucket.acquire(nbytes)
