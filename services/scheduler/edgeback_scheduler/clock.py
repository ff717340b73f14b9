"""The scheduler's clock: real UTC time, or (tests only) an accelerated one.

Schedules are evaluated against the scheduler's clock, injected everywhere as a
callable, so unit tests step it by hand and the process tests run a simulated day in a
minute. The accelerated clock is a pure function of real time and three settings, so
every process given the same settings reads the same simulated time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def simulated(origin: float, offset_s: float, speed: float, *, now: float) -> datetime:
    """Simulated UTC time at real Unix time ``now``:
    ``origin + offset_s + (now - origin) * speed``."""
    return datetime.fromtimestamp(origin + offset_s + (now - origin) * speed, UTC)


def make_clock(
    origin: float, offset_s: float, speed: float, real: Callable[[], float] = time.time
) -> Clock:
    """Real time when ``origin`` is 0 and there is no offset; else the simulated clock."""
    if origin == 0 and offset_s == 0:
        return lambda: datetime.fromtimestamp(real(), UTC)
    start = origin or real()
    return lambda: simulated(start, offset_s, speed, now=real())
