"""Pure parts of the pipelines: throttle arithmetic, progress, diff sampling, zero runs."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.fake_time import FakeTime

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.pipeline import Progress, ProgressMeter, TokenBucket
from edgeback_blocks.pipeline.restore import zero_runs
from edgeback_blocks.pipeline.sampling import sample_unchanged
from edgeback_core.errors import InvalidInputError


async def test_token_bucket_spends_its_burst_then_holds_the_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(100.0, burst=50.0, clock=time.clock, sleep=time.sleep)
    await bucket.acquire(50)
    assert time.slept == []
    await bucket.acquire(100)  # 100 bytes of debt at 100 B/s
    assert time.slept == [pytest.approx(1.0)]
    await bucket.acquire(1000)  # larger than the burst: accepted, paid off over time
    assert time.slept[-1] == pytest.approx(10.0)
    assert sum(time.slept) == pytest.approx((50 + 100 + 1000 - 50) / 100)


async def test_token_bucket_refills_while_idle_up_to_the_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(10.0, burst=20.0, clock=time.clock, sleep=time.sleep)
    await bucket.acquire(20)
    time.now += 100.0  # long idle: refill stops at the burst
    await bucket.acquire(20)
    await bucket.acquire(10)
    assert time.slept == [pytest.approx(1.0)]


async def test_token_bucket_serves_waiters_in_order() -> None:
    time = FakeTime()
    bucket = TokenBucket(10.0, burst=10.0, clock=time.clock, sleep=time.sleep)
    order: list[int] = []

    async def take(n: int) -> None:
        await bucket.acquire(10)
        order.append(n)

    await asyncio.gather(*(take(n) for n in range(4)))
    assert order == [0, 1, 2, 3]
    assert time.now == pytest.approx(3.0)


def test_token_bucket_refuses_a_non_positive_rate() -> None:
    with pytest.raises(InvalidInputError):
        TokenBucket(0)


def test_progress_meter_reports_on_its_interval_with_rate_and_eta() -> None:
    time = FakeTime()
    seen: list[Progress] = []
    meter = ProgressMeter(1000, seen.append, interval_s=1.0, clock=time.clock)
    meter.add(100)
    assert seen == []  # interval not yet passed
    time.now = 1.0
    meter.add(100)
    assert seen[-1].done_bytes == 200 and seen[-1].rate_bps == pytest.approx(200.0)
    assert seen[-1].eta_s == pytest.approx(4.0)
    time.now = 2.0
    final = meter.finish()
    assert final.final and final.eta_s == 0.0 and final.rate_bps == pytest.approx(100.0)
    assert seen[-1] is final


def test_progress_without_a_rate_has_no_eta() -> None:
    progress = Progress(done_bytes=0, total_bytes=10, elapsed_s=0.0, rate_bps=0.0)
    assert progress.eta_s is None and progress.fraction == 0.0


@given(
    st.sets(st.integers(0, 10_000), max_size=3000),
    st.floats(0.001, 1.0),
    st.integers(0, 20),
    st.integers(0, 2**32),
)
def test_sample_is_a_bounded_sorted_subset(
    unchanged: set[int], fraction: float, cap: int, seed: int
) -> None:
    sample = sample_unchanged(unchanged, random.Random(seed), fraction=fraction, cap=cap)
    assert sample == sorted(set(sample))
    assert set(sample) <= unchanged
    assert len(sample) <= cap
    if unchanged and cap > 0:
        assert len(sample) >= 1  # never trusts a diff without looking at something


@given(st.lists(st.booleans(), max_size=200))
def test_zero_runs_cover_exactly_the_zero_entries(zeros: list[bool]) -> None:
    entries = tuple(None if zero else ChunkDigest(b"\1" * 32) for zero in zeros)
    runs = list(zero_runs(entries))
    covered = [index for first, count in runs for index in range(first, first + count)]
    assert covered == [index for index, zero in enumerate(zeros) if zero]
    # maximal runs: two runs never touch
    assert all(a[0] + a[1] < b[0] for a, b in itertools.pairwise(runs))
