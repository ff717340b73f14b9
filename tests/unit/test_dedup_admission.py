"""The node's budget of upload body bytes: holds, waits in order, refuses after the wait."""

from __future__ import annotations

import asyncio

import pytest

from edgeback_core.errors import OverloadedError
from edgeback_dedup.admission import BodyBudget


async def test_bodies_beyond_the_budget_wait_for_room_in_arrival_order() -> None:
    budget = BodyBudget(100, wait_s=5)
    order: list[str] = []
    first = budget.hold(60)
    await first.__aenter__()

    async def take(name: str, size: int) -> None:
        async with budget.hold(size):
            order.append(name)

    waiting = [asyncio.create_task(take("b", 60)), asyncio.create_task(take("c", 10))]
    await asyncio.sleep(0)
    assert order == [] and budget.free == 40  # c would fit, but waits behind b
    await first.__aexit__(None, None, None)
    await asyncio.gather(*waiting)
    assert order == ["b", "c"] and budget.free == 100


async def test_a_body_larger_than_the_budget_is_admitted_alone() -> None:
    budget = BodyBudget(100, wait_s=5)
    async with budget.hold(1000):
        assert budget.free == 0
    assert budget.free == 100


async def test_a_wait_that_runs_out_is_overloaded_and_frees_its_place() -> None:
    budget = BodyBudget(100, wait_s=0.01)
    async with budget.hold(100):
        with pytest.raises(OverloadedError) as refused:
            async with budget.hold(1):
                pass
        assert refused.value.details["retry_after_s"] >= 1
    async with budget.hold(100):
        assert budget.free == 0


async def test_a_cancelled_waiter_gives_nothing_away() -> None:
    budget = BodyBudget(100, wait_s=5)
    async with budget.hold(100):
        waiter = asyncio.create_task(budget.hold(50).__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert budget.free == 100
