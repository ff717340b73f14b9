"""The run state machine as data: states, the allowed transitions, and their check.

Pure logic (no I/O, ``statemachine.py``): ``runs.py`` applies a checked transition to
MongoDB with a conditional update whose filter is built from ``allowed_from``, so a
transition is decided here once and enforced again by the database under concurrency.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from edgeback_catalog.statemachine import StateMachine


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
MACHINE = StateMachine("run", TRANSITIONS)
TERMINAL = MACHINE.terminal
is_allowed = MACHINE.is_allowed
allowed_from = MACHINE.allowed_from
check_transition = MACHINE.check
