"""Progress of a disk backup, restore or verify: bytes done of a total, rate and ETA.

The pipelines count bytes into a :class:`ProgressMeter` (pure, clock injected) and hand
:class:`Progress` snapshots to the caller's callback at most every ``interval_s`` seconds
and once at the end. The rate is an exponentially smoothed average over recent reports,
so a stall or a burst shows quickly without making the ETA jump around.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

ProgressCallback = Callable[["Progress"], None]
"""Called on the event loop: keep it quick (print, log, publish an event)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    done_bytes: int
    total_bytes: int
    elapsed_s: float
    rate_bps: float
    """Recent bytes per second (smoothed)."""
    final: bool = False

    @property
    def fraction(self) -> float:
        return 1.0 if self.total_bytes <= 0 else min(1.0, self.done_bytes / self.total_bytes)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate; None while the rate is unknown."""
        if self.final or self.done_bytes >= self.total_bytes:
            return 0.0
        if self.rate_bps <= 0:
            return None
        return (self.total_bytes - self.done_bytes) / self.rate_bps


class ProgressMeter:
    """Counts bytes and decides when to report; no I/O, the clock is injected."""

    def __init__(
        self,
        total_bytes: int,
        callback: ProgressCallback | None = None,
        *,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        smoothing: float = 0.3,
        already: int = 0,
    ) -> None:
        """``already``: bytes done before this meter (a resumed or partial job): counted
        done from the start, not in the rate."""
        self.total_bytes = total_bytes
        self.done_bytes = already
        self._callback = callback
        self._interval_s = interval_s
        self._clock = clock
        self._smoothing = smoothing
        self._start = clock()
        self._last_time = self._start
        self._last_done = already
        self._rate = 0.0

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` more done; reports when the interval has passed."""
        self.done_bytes += nbytes
        now = self._clock()
        if now - self._last_time >= self._interval_s:
            self._report(now, final=False)

    def finish(self) -> Progress:
        """The final report (also sent to the callback)."""
        return self._report(self._clock(), final=True)

    def snapshot(self) -> Progress:
        return self._progress(self._clock(), final=False)

    def _report(self, now: float, *, final: bool) -> Progress:
        span = now - self._last_time
        if span > 0:
            recent = (self.done_bytes - self._last_done) / span
            first = self._last_done == 0 and self._rate == 0.0
            self._rate = recent if first else self._rate + self._smoothing * (recent - self._rate)
        self._last_time, self._last_done = now, self.done_bytes
        progress = self._progress(now, final=final)
        if self._callback is not None:
            self._callback(progress)
        return progress

    def _progress(self, now: float, *, final: bool) -> Progress:
        elapsed = now - self._start
        rate = self._rate
        if final and elapsed > 0:
            rate = self.done_bytes / elapsed
        return Progress(
            done_bytes=self.done_bytes,
            total_bytes=self.total_bytes,
            elapsed_s=elapsed,
            rate_bps=rate,
            final=final,
        )
