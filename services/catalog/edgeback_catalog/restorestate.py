"""The restore state machine as data, like ``runstate``: states, transitions, checks.

A restore is created ``pending_verification``; the right verification code moves it
to ``queued`` (schedule immediate: its ``PlanRestore`` is published at once) or
``scheduled`` (once / manual: queued at its time by the scheduler, or run by hand,
``restorequeue``). A code left unused past its expiry ends it ``expired``, and so does
a once time the scheduler finds past its late limit. Pure (no I/O): ``restores.py`` enforces
each checked transition again with a conditional update built from
:func:`allowed_from`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from edgeback_catalog.statemachine import StateMachine


class RestoreState(enum.StrEnum):
    PENDING_VERIFICATION = "pending_verification"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


_S = RestoreState

TRANSITIONS: Mapping[RestoreState, frozenset[RestoreState]] = {
    _S.PENDING_VERIFICATION: frozenset({_S.QUEUED, _S.SCHEDULED, _S.CANCELLED, _S.EXPIRED}),
    # EXPIRED from SCHEDULED: a once restore found past the scheduler's late limit.
    _S.SCHEDULED: frozenset({_S.QUEUED, _S.CANCELLED, _S.EXPIRED}),
    # FAILED from QUEUED: the command could not be published, or the worker refused it.
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLING, _S.CANCELLED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.PARTIALLY_SUCCEEDED, _S.CANCELLING}),
    # A worker may finish before it sees the cancel request: its outcome wins.
    _S.CANCELLING: frozenset({_S.CANCELLED, _S.SUCCEEDED, _S.FAILED, _S.PARTIALLY_SUCCEEDED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.PARTIALLY_SUCCEEDED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.EXPIRED: frozenset(),
}

INITIAL = RestoreState.PENDING_VERIFICATION
MACHINE = StateMachine("restore", TRANSITIONS)
TERMINAL = MACHINE.terminal
is_allowed = MACHINE.is_allowed
allowed_from = MACHINE.allowed_from
check_transition = MACHINE.check


BUSY = frozenset({_S.QUEUED, _S.RUNNING, _S.CANCELLING})
"""A restore job with a restore in one of these is busy (not started, edited, deleted)."""
WAITING = frozenset({_S.PENDING_VERIFICATION, _S.SCHEDULED})
"""Verified or not, not queued yet: cancelled when their restore job's spec changes."""


def cancel_target(current: RestoreState) -> RestoreState:
    """Where a cancel request takes a restore: at once before a worker has it, through
    ``cancelling`` once one does."""
    if current in (_S.RUNNING, _S.QUEUED):
        return _S.CANCELLING if current is _S.RUNNING else _S.CANCELLED
    return _S.CANCELLED
