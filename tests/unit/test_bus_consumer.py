"""The consumer wrapper's decision table."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeback_core import errors
from edgeback_core.bus.consumer import Outcome, decide
from edgeback_core.bus.topology import QueueSpec

SPEC = QueueSpec(name="s.q", exchange="events", bindings=("#",), retry_delays=(1, 5), max_retries=3)

transient = st.sampled_from(
    [
        errors.TransientError,
        errors.UnavailableError,
        errors.DeadlineExceededError,
        errors.LockBusyError,
    ]
)
final = st.sampled_from(
    [
        errors.PermanentError,
        errors.NotFoundError,
        errors.UnroutableError,
        errors.IntegrityError,
        errors.DigestMismatchError,
        errors.ConfigError,
        errors.EdgebackError,
    ]
)


@given(transient, st.integers(0, 10))
def test_transient_retries_until_max_then_dead_letters(cls: type[Exception], done: int) -> None:
    decision = decide(cls("x"), retries_done=done, spec=SPEC)
    if done < SPEC.max_retries:
        assert decision.outcome is Outcome.RETRY
        assert decision.delay == SPEC.retry_delay(done)
    else:
        assert decision.outcome is Outcome.DEAD_LETTER


@given(final, st.integers(0, 10))
def test_non_retryable_errors_dead_letter_at_once(cls: type[Exception], done: int) -> None:
    assert decide(cls("x"), retries_done=done, spec=SPEC).outcome is Outcome.DEAD_LETTER


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("k"), ZeroDivisionError()])
def test_bugs_requeue_and_success_acks(error: Exception) -> None:
    assert decide(error, retries_done=0, spec=SPEC).outcome is Outcome.REQUEUE
    assert decide(None, retries_done=9, spec=SPEC).outcome is Outcome.ACK


def test_undecodable_body_dead_letters() -> None:
    with pytest.raises(msgspec.DecodeError) as caught:
        msgspec.json.decode(b"{", type=dict)
    assert decide(caught.value, retries_done=0, spec=SPEC).outcome is Outcome.DEAD_LETTER


def test_cancelled_is_not_an_exception_the_wrapper_sees() -> None:
    # CancelledError is a BaseException: the wrapper's `except Exception` cannot swallow it
    assert not issubclass(asyncio.CancelledError, Exception)


@given(st.floats(0, 100, allow_nan=False), st.integers(0, 50))
def test_a_deferral_parks_without_counting_and_never_dead_letters(wanted: float, done: int) -> None:
    decision = decide(
        errors.DeferredError("lease busy", delay_s=wanted), retries_done=done, spec=SPEC
    )
    assert decision.outcome is Outcome.RETRY and not decision.counts
    assert decision.delay in SPEC.retry_delays
    # the longest declared delay not above the wish, else the shortest
    assert decision.delay <= max(wanted, min(SPEC.retry_delays))
    longer = [d for d in SPEC.retry_delays if decision.delay < d <= wanted]
    assert longer == []
