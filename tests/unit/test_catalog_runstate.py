"""The run state machine as a table: its properties, checked exhaustively and by search."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_catalog.runstate import (
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    RunState,
    allowed_from,
    check_transition,
    is_allowed,
)
from edgeback_core.errors import InvalidTransitionError

states = st.sampled_from(list(RunState))


def test_terminal_states_are_the_four_outcomes() -> None:
    assert {str(s) for s in TERMINAL} == {
        "succeeded",
        "failed",
        "partially_succeeded",
        "cancelled",
    }


def test_every_state_is_reachable_from_pending_and_can_finish() -> None:
    reached, frontier = {INITIAL}, [INITIAL]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(RunState)
    for state in set(RunState) - TERMINAL:
        assert TRANSITIONS[state] & TERMINAL or any(
            TRANSITIONS[n] & TERMINAL for n in TRANSITIONS[state]
        ), state


def test_a_run_never_goes_back_to_pending_or_stays_put() -> None:
    for state, targets in TRANSITIONS.items():
        assert RunState.PENDING not in targets
        assert state not in targets


@given(states, states)
def test_check_agrees_with_the_table(current: RunState, target: RunState) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
        assert current in allowed_from(target)
    else:
        with pytest.raises(InvalidTransitionError) as err:
            check_transition(current, target)
        assert err.value.code == "invalid_transition"
        assert current not in allowed_from(target)


@given(st.lists(states, max_size=30))
def test_any_sequence_of_requests_yields_a_valid_finite_path(requests: list[RunState]) -> None:
    state, path = INITIAL, [INITIAL]
    for target in requests:
        if is_allowed(state, target):
            state = target
            path.append(state)
    assert len(path) == len(set(path)), "a run never revisits a state"
    assert all(is_allowed(a, b) for a, b in itertools.pairwise(path))
    assert all(s not in TERMINAL for s in path[:-1])
    assert len(path) <= 5  # pending → queued → running → cancelling → cancelled
