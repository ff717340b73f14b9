"""The one retry policy of our clients (the platform API, the storage node's data API).

A :class:`RetryPolicy` says how many more attempts follow the first, how long to wait
between them (exponential, capped, with full jitter, so that many callers failing at
once do not come back in step), and optionally a deadline for the whole call. Only
errors marked ``retryable`` are retried; anything else, including bugs, goes straight
to the caller. :func:`retrying` runs a call under a policy with the sleep, clock and
jitter injected, so the policy is tested without waiting. Callers retry idempotent
requests only.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from edgeback_core.errors import DeadlineExceededError, EdgebackError, UnavailableError

T = TypeVar("T")
_MAX_EXPONENT = 64
"""Beyond this the capped delay is max_delay anyway; keeps ``multiplier**n`` finite."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``retries`` more attempts after the first; delays grow by ``multiplier`` from
    ``base_delay`` up to ``max_delay`` (seconds); no attempt starts after ``deadline``
    seconds from the first one, if set. With ``reconnect`` set, a lost connection (the
    peer unreachable or silent) is tried again past ``retries`` until ``reconnect``
    seconds from the first attempt, the last attempt at that time: a job's "reconnect
    time"."""

    retries: int = 3
    base_delay: float = 0.1
    max_delay: float = 10.0
    multiplier: float = 2.0
    deadline: float | None = None
    reconnect: float | None = None

    def delay(self, attempt: int, jitter: float) -> float:
        """Full jitter: a uniform share (``jitter`` in [0, 1)) of the capped exponential
        for the wait after attempt number ``attempt`` (0 is the first)."""
        growth = self.multiplier ** min(attempt, _MAX_EXPONENT)
        return jitter * min(self.max_delay, self.base_delay * growth)

    def pause(
        self, error: BaseException, *, attempt: int, elapsed: float, jitter: float
    ) -> float | None:
        """Seconds to wait before trying again after attempt ``attempt`` failed with
        ``error``, ``elapsed`` seconds after the first began; None to give up."""
        if not retryable(error):
            return None
        delay = self.delay(attempt, jitter)
        if self.deadline is not None and elapsed + delay >= self.deadline:
            return None
        if attempt < self.retries:
            return delay
        if self.reconnect is not None and lost_connection(error):
            # the last wait ends at the reconnect time, so a peer back just before it is
            # heard: an outage shorter than the reconnect time is always ridden out
            left = self.reconnect - elapsed
            return min(delay, left) if left > 0 else None
        return None


def retryable(error: BaseException) -> bool:
    """Whether trying again may succeed: our errors that say so; never a bug."""
    return isinstance(error, EdgebackError) and error.retryable


def lost_connection(error: BaseException) -> bool:
    """The peer did not answer at all (refused, reset, timed out): what a reconnect
    time is for, unlike an answer that said no."""
    return isinstance(error, UnavailableError | DeadlineExceededError) and error.retryable


OnRetry = Callable[[int, float, EdgebackError], None]
"""Told (attempts made so far, delay before the next, the error) before each wait."""


class _Logger(Protocol):
    def warning(self, event: str, **keys: Any) -> Any: ...


def logged(log: _Logger, event: str, then: OnRetry | None = None, **keys: Any) -> OnRetry:
    """An ``OnRetry`` that logs ``event`` at warning level (``keys``, the attempt, the
    delay and the error's code), then tells ``then``."""

    def note(attempts: int, delay: float, exc: EdgebackError) -> None:
        log.warning(event, **keys, attempt=attempts, delay_s=round(delay, 3), error_code=exc.code)
        if then is not None:
            then(attempts, delay, exc)

    return note


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
    on_retry: OnRetry | None = None,
) -> T:
    """The result of ``call``, tried again under ``policy``; else its last error."""
    start = clock()
    attempt = 0
    while True:
        try:
            return await call()
        except EdgebackError as exc:
            delay = policy.pause(exc, attempt=attempt, elapsed=clock() - start, jitter=jitter())
            if delay is None:
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, delay, exc)
        await sleep(delay)
