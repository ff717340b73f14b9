"""The run state machine as data: states, the allowed transitions, and their check.

Pure logic (no I/O): ``runs.py`` applies a checked transition to MongoDB with a
conditional update whose filter is built from :func:`allowed_from`, so a transition
is decided here once and enforced again by the database under concurrency.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from edgeback_core.errors import InvalidTransitionError


class RunState(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    CANCELLED = "cancelled"


_S = RunState

TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    _S.PENDING: frozenset({_S.QUEUED, _S.CANCELLED, _S.FAILED}),
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLING, _S.CANCELLED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.PARTIALLY_SUCCEEDED, _S.CANCELLING}),
    # A worker may finish (or fail) before it sees the cancel request: its outcome wins.
    _S.CANCELLING: frozenset({_S.CANCELLED, _S.SUCCEEDED, _S.FAILED, _S.PARTIALLY_SUCCEEDED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.PARTIALLY_SUCCEEDED: frozenset(),
    _S.CANCELLED: frozenset(),
}

INITIAL = RunState.PENDING
TERMINAL: frozenset[RunState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def is_allowed(current: RunState, target: RunState) -> bool:
    return target in TRANSITIONS[current]


def allowed_from(target: RunState) -> frozenset[RunState]:
    """Every state from which ``target`` may be entered."""
    return frozenset(s for s, nxt in TRANSITIONS.items() if target in nxt)


def check_transition(current: RunState, target: RunState) -> None:
    """Raise :class:`InvalidTransitionError` unless ``current → target`` is allowed."""
    if not is_allowed(current, target):
        raise InvalidTransitionError(
            f"a run cannot go from {current} to {target}",
            current=str(current),
            target=str(target),
        )
