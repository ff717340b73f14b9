"""Throttles: an async ``acquire(nbytes)`` protocol and a token bucket (no I/O, no driver).

Backups and restores call ``acquire`` before each disk read or write (the "read"
throttle, backup/restore speed) and before each network transfer (the "network"
throttle); the storage node before it sends bytes of a disk image. A
token bucket refills at ``rate`` bytes per second up to ``burst`` bytes; a request takes
its bytes at once, possibly into debt, and waits until the debt is paid, so any size is
accepted and the long-run rate holds. Time-of-day windows belong to the caller: it
can swap or retune the bucket (``set_rate``) when a window opens or closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from edgeback_core.errors import InvalidInputError


class Throttle(Protocol):
    async def acquire(self, nbytes: int) -> None:
        """Wait until ``nbytes`` may pass."""


class NoThrottle:
    """A throttle that never waits."""

    async def acquire(self, nbytes: int) -> None:
        return None


UNLIMITED = NoThrottle()


class TokenBucket:
    """``rate`` bytes/s with bursts up to ``burst`` bytes; waiters are served in order."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self.set_rate(rate, burst=burst)
        self._tokens = self._burst
        self._stamp = clock()

    def set_rate(self, rate: float, *, burst: float | None = None) -> None:
        """Change the rate (and burst; default one second's worth, at least 4 MiB)."""
        if rate <= 0:
            raise InvalidInputError("throttle rate must be positive", rate=rate)
        self._rate = float(rate)
        self._burst = float(burst if burst is not None else max(rate, 4 * 1024 * 1024))
        if self._burst <= 0:
            raise InvalidInputError("throttle burst must be positive", burst=self._burst)

    @property
    def rate(self) -> float:
        return self._rate

    async def acquire(self, nbytes: int) -> None:
        # the lock makes waiters queue in FIFO order instead of racing for refills
        async with self._lock:
            wait = self._reserve(nbytes)
            if wait > 0:
                await self._sleep(wait)

    def _reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` now (possibly into debt); the seconds until the debt is paid."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= nbytes
        return max(0.0, -self._tokens / self._rate)
