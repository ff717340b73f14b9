"""The VM task state machine and the run's outcome derived from its VMs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_catalog.runstate import RunState
from edgeback_catalog.vmtaskstate import (
    FINISHED,
    TRANSITIONS,
    Claim,
    TaskPoint,
    VmTaskState,
    claim,
    decide_finish,
    decide_start,
    run_outcome,
    run_over,
)
from edgeback_core.errors import ConflictError, InvalidInputError, InvalidTransitionError
from edgeback_core.messages.runs import REFUSE_SHELVED, SKIP_LOW_FREE_SPACE

V = VmTaskState
CODES = {V.SUCCEEDED: "", V.FAILED: "rbd_io_error", V.SKIPPED: SKIP_LOW_FREE_SPACE,
         V.REFUSED: REFUSE_SHELVED}  # fmt: skip


@given(st.lists(st.sampled_from(list(V)), max_size=12))
def test_run_outcome_is_all_some_or_none(states: list[VmTaskState]) -> None:
    ok = states.count(V.SUCCEEDED)
    expected = (
        RunState.SUCCEEDED
        if states and ok == len(states)
        else RunState.PARTIALLY_SUCCEEDED
        if ok
        else RunState.FAILED
    )
    assert run_outcome(states) is expected


def test_no_vm_is_a_failed_run() -> None:
    assert run_outcome([]) is RunState.FAILED


@given(st.lists(st.sampled_from(list(V)), max_size=12))
def test_a_cancelled_run_ends_cancelled_unless_every_vm_succeeded(
    states: list[VmTaskState],
) -> None:
    done = bool(states) and all(s is V.SUCCEEDED for s in states)
    expected = RunState.SUCCEEDED if done else RunState.CANCELLED
    assert run_outcome(states, cancelling=True) is expected


steps = st.lists(
    st.tuples(
        st.sampled_from(["start", "finish"]),
        st.integers(1, 4),
        st.sampled_from(sorted(FINISHED)),
    ),
    max_size=30,
)


@given(steps)
def test_any_sequence_of_steps_keeps_one_result_per_attempt(
    sequence: list[tuple[str, int, VmTaskState]],
) -> None:
    """Applied steps follow the table; a repeated result is a no-op; a different result
    for a finished attempt is a conflict; at most max_attempts attempts ever start."""
    task = TaskPoint(state=V.PENDING, attempt=1, results={})
    results: dict[int, tuple[VmTaskState, str]] = {}
    for op, attempt, outcome in sequence:
        before = task
        try:
            if op == "start":
                if decide_start(task, attempt, max_attempts=3):
                    assert V.RUNNING in TRANSITIONS[task.state]
                    task = TaskPoint(state=V.RUNNING, attempt=attempt, results=results)
            elif decide_finish(task, attempt, outcome, CODES[outcome]):
                assert attempt == task.attempt and outcome in TRANSITIONS[task.state]
                results = {**results, attempt: (outcome, CODES[outcome])}
                task = TaskPoint(
                    state=outcome, attempt=attempt, code=CODES[outcome], results=results
                )
            else:
                assert results.get(attempt) == (outcome, CODES[outcome])
        except ConflictError as exc:
            assert task == before
            if not isinstance(exc, InvalidTransitionError):
                assert attempt in results and results[attempt] != (outcome, CODES[outcome])
        assert task.attempt <= 3


def test_results_need_the_right_kind_of_code() -> None:
    running = TaskPoint(state=V.RUNNING, attempt=1)
    for outcome, code in [(V.SUCCEEDED, "x"), (V.FAILED, ""), (V.SKIPPED, REFUSE_SHELVED),
                          (V.REFUSED, SKIP_LOW_FREE_SPACE), (V.RUNNING, "")]:  # fmt: skip
        with pytest.raises(InvalidInputError):
            decide_finish(running, 1, outcome, code)


def test_skip_and_refuse_may_come_before_the_start_but_success_may_not() -> None:
    pending = TaskPoint(state=V.PENDING, attempt=1)
    assert decide_finish(pending, 1, V.SKIPPED, SKIP_LOW_FREE_SPACE)
    assert decide_finish(pending, 1, V.REFUSED, REFUSE_SHELVED)
    with pytest.raises(InvalidTransitionError):
        decide_finish(pending, 1, V.SUCCEEDED, "")


def test_a_retry_is_the_next_attempt_of_a_failed_vm_within_the_limit() -> None:
    failed = TaskPoint(state=V.FAILED, attempt=1, code="x", results={1: (V.FAILED, "x")})
    assert not decide_start(failed, 1, max_attempts=2)  # redelivered start of attempt 1
    assert decide_start(failed, 2, max_attempts=2)
    with pytest.raises(InvalidTransitionError):
        decide_start(failed, 3, max_attempts=2)
    last = TaskPoint(state=V.FAILED, attempt=2, code="x")
    with pytest.raises(InvalidTransitionError, match="VM retries"):
        decide_start(last, 3, max_attempts=2)
    done = TaskPoint(state=V.SUCCEEDED, attempt=1)
    with pytest.raises(InvalidTransitionError):
        decide_start(done, 2, max_attempts=5)


@given(
    st.sampled_from(["w1", "w2"]),
    st.one_of(st.none(), st.integers(-5, 5)),
    st.sampled_from(["w1", "w2"]),
)
def test_a_claim_is_kept_by_its_holder_and_taken_over_only_once_expired(
    holder: str, offset: int | None, asker: str
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    until = None if offset is None else now + timedelta(seconds=offset)
    verdict = claim(holder, until, asker, now)
    if holder == asker:
        assert verdict is Claim.OWN
    elif until is not None and until > now:
        assert verdict is Claim.HELD
    else:
        assert verdict is Claim.TAKE_OVER


@given(st.lists(st.tuples(st.sampled_from(list(V)), st.booleans()), max_size=8))
def test_a_run_is_over_when_no_vm_is_open_or_awaiting_a_retry(
    tasks: list[tuple[VmTaskState, bool]],
) -> None:
    open_ = [
        s for s, retrying in tasks if s in (V.PENDING, V.RUNNING) or (s is V.FAILED and retrying)
    ]
    assert run_over(tasks) == (not open_)
