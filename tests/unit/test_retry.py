"""The shared retry policy, on an injected clock: no test here waits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.fake_time import FakeTime

from edgeback_core import errors
from edgeback_core.retry import RetryPolicy, retryable, retrying


class Flaky:
    """Fails with ``failures`` in turn, then answers "ok"; counts its calls."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def _run(call: Flaky, policy: RetryPolicy, time: FakeTime, jitter: float = 1.0) -> str:
    return await retrying(call, policy, sleep=time.sleep, clock=time.clock, jitter=lambda: jitter)


async def test_transient_failures_are_retried_with_capped_exponential_backoff() -> None:
    time = FakeTime()
    call = Flaky(*(errors.UnavailableError("down") for _ in range(4)))
    policy = RetryPolicy(retries=5, base_delay=0.1, max_delay=0.4)
    assert await _run(call, policy, time) == "ok"
    assert call.calls == 5
    assert time.slept == [0.1, 0.2, 0.4, 0.4]


async def test_jitter_takes_a_share_of_each_delay() -> None:
    time = FakeTime()
    call = Flaky(errors.LockBusyError("busy"), errors.LockBusyError("busy"))
    await _run(call, RetryPolicy(retries=2, base_delay=1.0, multiplier=4.0), time, jitter=0.25)
    assert time.slept == [0.25, 1.0]


async def test_the_last_error_is_raised_when_retries_run_out() -> None:
    time = FakeTime()
    last = errors.DeadlineExceededError("third")
    call = Flaky(errors.UnavailableError("first"), errors.UnavailableError("second"), last)
    with pytest.raises(errors.DeadlineExceededError) as failed:
        await _run(call, RetryPolicy(retries=2), time)
    assert failed.value is last
    assert call.calls == 3
    assert len(time.slept) == 2


@pytest.mark.parametrize(
    "error",
    [
        errors.NotFoundError("gone"),
        errors.DigestMismatchError("bad"),
        errors.PlatformTlsError("certificate"),  # transient branch, not retryable
        ValueError("a bug"),
    ],
    ids=type,
)
async def test_errors_that_are_not_retryable_go_straight_to_the_caller(error: Exception) -> None:
    time = FakeTime()
    call = Flaky(error)
    with pytest.raises(type(error)):
        await _run(call, RetryPolicy(retries=5), time)
    assert call.calls == 1
    assert time.slept == []
    assert not retryable(error)


@pytest.mark.parametrize(
    ("policy", "slept"),
    [
        # waits 1 + 2 + 4 = 7 s; another 4 s would start the fifth attempt at 11 s > 8 s
        (RetryPolicy(retries=10, base_delay=1.0, max_delay=4.0, deadline=8.0), [1.0, 2.0, 4.0]),
        # a lost connection past the retries: the third wait is cut to end at 10 s, where
        # the last attempt starts
        (RetryPolicy(retries=0, base_delay=4.0, max_delay=4.0, reconnect=10.0), [4.0, 4.0, 2.0]),
    ],
    ids=["deadline", "reconnect"],
)
async def test_no_attempt_starts_after_the_deadline_or_the_reconnect_time(
    policy: RetryPolicy, slept: list[float]
) -> None:
    time = FakeTime()
    call = Flaky(*(errors.UnavailableError("down") for _ in range(20)))
    with pytest.raises(errors.UnavailableError):
        await _run(call, policy, time)
    assert time.slept == slept
    assert call.calls == len(slept) + 1


async def test_a_lost_connection_is_tried_again_past_the_retries_until_the_reconnect_time() -> None:
    time = FakeTime()
    call = Flaky(*(errors.DeadlineExceededError("silent") for _ in range(6)))
    policy = RetryPolicy(retries=1, base_delay=1.0, max_delay=2.0, reconnect=60.0)
    assert await _run(call, policy, time) == "ok"
    assert time.slept == [1.0, 2.0, 2.0, 2.0, 2.0, 2.0]


async def test_the_reconnect_time_does_not_extend_other_transient_errors() -> None:
    time = FakeTime()
    call = Flaky(errors.LockBusyError("busy"), errors.LockBusyError("busy"))
    with pytest.raises(errors.LockBusyError):
        await _run(call, RetryPolicy(retries=1, reconnect=600.0), time)
    assert call.calls == 2


async def test_each_retry_is_reported_before_its_wait() -> None:
    time = FakeTime()
    seen: list[tuple[int, float, str]] = []
    await retrying(
        Flaky(errors.UnavailableError("a"), errors.LockBusyError("b")),
        RetryPolicy(retries=3, base_delay=0.5),
        sleep=time.sleep,
        clock=time.clock,
        jitter=lambda: 1.0,
        on_retry=lambda n, delay, exc: seen.append((n, delay, exc.code)),
    )
    assert seen == [(1, 0.5, "unavailable"), (2, 1.0, "lock_busy")]


@given(st.integers(0, 10_000), st.floats(0, 1, exclude_max=True), st.floats(1, 16))
def test_delays_stay_within_zero_and_the_cap(attempt: int, jitter: float, factor: float) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10.0, multiplier=factor)
    assert 0.0 <= policy.delay(attempt, jitter) <= 10.0
