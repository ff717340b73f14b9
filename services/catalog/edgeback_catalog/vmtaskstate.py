"""The state machine of one VM in a run, as data, and the run's outcome from its VMs.

Pure logic (no I/O). ``runtasks.py`` enforces each decision again with a conditional
update (state and attempt in the filter). A VM task goes pending → running →
succeeded / failed / skipped / refused; skipped and refused may also come straight
from pending (checked before the snapshot), and failed → running is a retry with the
next attempt. Steps are keyed by (run, VM, attempt): a repeated step with the same
result is answered as done, a different result for the same attempt is a conflict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from edgeback_catalog.runstate import RunState
from edgeback_catalog.statemachine import StateMachine
from edgeback_core.errors import ConflictError, InvalidInputError, InvalidTransitionError
from edgeback_core.messages.runs import REFUSE_REASONS, SKIP_REASONS


class VmTaskState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    REFUSED = "refused"


_V = VmTaskState

TRANSITIONS: Mapping[VmTaskState, frozenset[VmTaskState]] = {
    _V.PENDING: frozenset({_V.RUNNING, _V.SKIPPED, _V.REFUSED, _V.FAILED}),
    _V.RUNNING: frozenset({_V.SUCCEEDED, _V.FAILED, _V.SKIPPED, _V.REFUSED}),
    _V.FAILED: frozenset({_V.RUNNING}),  # a retry, with the next attempt
    _V.SUCCEEDED: frozenset(),
    _V.SKIPPED: frozenset(),
    _V.REFUSED: frozenset(),
}
FINISHED: frozenset[VmTaskState] = frozenset({_V.SUCCEEDED, _V.FAILED, _V.SKIPPED, _V.REFUSED})
UNFINISHED: frozenset[VmTaskState] = frozenset({_V.PENDING, _V.RUNNING})


MACHINE = StateMachine("VM task", TRANSITIONS)
allowed_from = MACHINE.allowed_from


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPoint:
    """What the rules need of a task: where it is, and the results of past attempts."""

    state: VmTaskState
    attempt: int
    code: str = ""
    results: Mapping[int, tuple[VmTaskState, str]] | None = None


def check_result(
    outcome: VmTaskState, code: str, refuse_reasons: frozenset[str] = REFUSE_REASONS
) -> None:
    """A result carries the right kind of code: none for success, a reason for the rest.
    ``refuse_reasons``: the refusal codes of the task's kind (backup runs' by default;
    restores pass theirs)."""
    if outcome is _V.SUCCEEDED and code:
        raise InvalidInputError("a succeeded VM carries no code")
    if outcome is _V.FAILED and not code:
        raise InvalidInputError("a failed VM needs the error code that failed it")
    if outcome is _V.SKIPPED and code not in SKIP_REASONS:
        raise InvalidInputError(f"skip reason must be one of {sorted(SKIP_REASONS)}")
    if outcome is _V.REFUSED and code not in refuse_reasons:
        raise InvalidInputError(f"refuse reason must be one of {sorted(refuse_reasons)}")
    if outcome not in FINISHED:
        raise InvalidInputError(f"{outcome} is not a result")


def decide_start(task: TaskPoint, attempt: int, max_attempts: int) -> bool:
    """True: move to running now; False: already done for this attempt (answer as is)."""
    if attempt < task.attempt or (attempt == task.attempt and task.state is not _V.PENDING):
        return False  # a redelivered start: running, finished, or an older attempt
    if task.state is _V.PENDING and attempt == task.attempt:
        return True
    if task.state is _V.FAILED and attempt == task.attempt + 1:
        if attempt > max_attempts:
            raise InvalidTransitionError(
                f"attempt {attempt} exceeds the job's {max_attempts - 1} VM retries"
            )
        return True
    raise InvalidTransitionError(
        f"cannot start attempt {attempt} of a VM {task.state} at attempt {task.attempt}"
    )


def decide_finish(
    task: TaskPoint,
    attempt: int,
    outcome: VmTaskState,
    code: str,
    *,
    refuse_reasons: frozenset[str] = REFUSE_REASONS,
) -> bool:
    """True: apply the result now; False: this same result is already recorded."""
    check_result(outcome, code, refuse_reasons)
    recorded = dict(task.results or {})
    if task.state in FINISHED and attempt == task.attempt:
        recorded[attempt] = (task.state, task.code)
    if attempt in recorded:
        if recorded[attempt] == (outcome, code):
            return False
        state, was = recorded[attempt]
        raise ConflictError(
            f"attempt {attempt} already ended {state}{f' ({was})' if was else ''}, "
            f"not {outcome}{f' ({code})' if code else ''}"
        )
    if attempt != task.attempt or outcome not in TRANSITIONS[task.state]:
        raise InvalidTransitionError(
            f"attempt {attempt} cannot end {outcome}: the VM is {task.state} "
            f"at attempt {task.attempt}"
        )
    return True


class Claim(enum.Enum):
    OWN = "own"  # the caller's own claim: go on
    HELD = "held"  # another worker's live claim: defer
    TAKE_OVER = "take_over"  # another worker's claim ran out: it died, resume its work


def claim(holder: str, claimed_until: datetime | None, worker_id: str, now: datetime) -> Claim:
    """Who gets a running attempt asked for again by ``worker_id``."""
    if holder == worker_id:
        return Claim.OWN
    if claimed_until is not None and now < claimed_until:
        return Claim.HELD
    return Claim.TAKE_OVER


def run_over(tasks: Iterable[tuple[VmTaskState, bool]]) -> bool:
    """Every VM ended for good: none pending or running, no failed one awaiting a retry
    (``(state, retrying)`` pairs)."""
    return all(s not in UNFINISHED and not (s is _V.FAILED and retrying) for s, retrying in tasks)


def outcome_of(states: Iterable[VmTaskState], *, cancelling: bool = False) -> str:
    """All VMs succeeded → succeeded; some → partially succeeded; none (or no VM) → failed.
    Skipped, refused and unfinished VMs count as not succeeded. A run (or a restore)
    being cancelled ends ``cancelled`` unless every VM succeeded before the cancel was
    seen. The name is the same in both state machines (``RunState``, ``RestoreState``)."""
    seen = list(states)
    ok = sum(1 for s in seen if s is _V.SUCCEEDED)
    if seen and ok == len(seen):
        return "succeeded"
    if cancelling:
        return "cancelled"
    return "partially_succeeded" if ok else "failed"


def run_outcome(states: Iterable[VmTaskState], *, cancelling: bool = False) -> RunState:
    """:func:`outcome_of` as the run's state."""
    return RunState(outcome_of(states, cancelling=cancelling))
