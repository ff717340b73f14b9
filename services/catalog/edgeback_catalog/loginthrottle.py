"""How repeated failed logins are slowed down. Pure: no I/O, times passed in.

Failures are counted per user name and per client address (two counters, so that
neither guessing many passwords of one user from many addresses nor one password of
many users from one address goes fast). The first ``FREE_FAILURES`` cost nothing;
each one after doubles the wait before the next attempt is even checked, from 1 s up
to ``MAX_DELAY_S``. A counter forgets after ``FORGET_AFTER`` without failures. Every
attempt is counted before its password is checked (``logincounters``); a successful
login clears the user's counter and only gives its own count back to the address's
(one account an attacker owns must not wipe their address's record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FREE_FAILURES = 3
MAX_DELAY_S = 300.0
FORGET_AFTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failures:
    """One counter as stored: how many failures, the last one when."""

    count: int
    last_at: datetime


def delay_s(count: int) -> float:
    """The wait imposed after ``count`` failures in a row."""
    if count <= FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY_S, 2.0 ** (count - FREE_FAILURES - 1))


def live_count(failures: Failures | None, now: datetime) -> int:
    """The count still in force at ``now`` (0 once forgotten)."""
    if failures is None or now - failures.last_at >= FORGET_AFTER:
        return 0
    return failures.count


def retry_after_s(failures: Failures | None, now: datetime) -> float:
    """Seconds before another attempt is checked (0: now)."""
    count = live_count(failures, now)
    if count == 0 or failures is None:
        return 0.0
    wait = delay_s(count) - (now - failures.last_at).total_seconds()
    return max(0.0, wait)
