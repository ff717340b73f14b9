"""Fleet-wide limits as leases in the real catalog DB: never more holders than the
limit, also with many concurrent acquirers through several clients; an expired
holder's slot is taken over; renew refuses a lost lease; release is idempotent."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest

from edgeback_catalog.leasing import Leases
from edgeback_catalog.mongo import CatalogDb
from edgeback_core.errors import LeaseLostError

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def clients(mongo_url: str) -> AsyncIterator[tuple[Clock, list[Leases]]]:
    """Three lease stores, each with its own client, over one fresh database."""
    name = f"test_catalog_{uuid.uuid4().hex[:12]}"
    clock = Clock()
    async with AsyncExitStack() as stack:
        dbs = [await stack.enter_async_context(CatalogDb.open(mongo_url, name)) for _ in range(3)]
        try:
            yield clock, [Leases(db, clock) for db in dbs]
        finally:
            await dbs[0].drop()


async def test_concurrent_acquirers_never_exceed_the_limit(
    clients: tuple[Clock, list[Leases]],
) -> None:
    clock, stores = clients
    rng = random.Random(7)
    for limit in (1, 3, 5):
        scope = f"run:r-{limit}"
        holders = [f"w{i}/vm-{i}" for i in range(4 * limit + 3)]
        results = await asyncio.gather(
            *(stores[i % 3].acquire(scope, h, limit, 30) for i, h in enumerate(holders))
        )
        granted = [lease for lease in results if lease is not None]
        assert len(granted) == limit, (limit, granted)
        assert sorted(lease.slot for lease in granted) == list(range(limit))
        live = await stores[1].holders(scope)
        assert sorted(lease.holder for lease in live) == sorted(g.holder for g in granted)
        # holders come and go at random, concurrently: still never more than the limit
        for _ in range(3):
            quitting = rng.sample(granted, k=rng.randint(0, len(granted)))
            ops: list[asyncio.Future[object]] = []
            for lease in quitting:
                ops.append(
                    asyncio.ensure_future(stores[0].release(scope, lease.slot, lease.holder))
                )
            ops += [
                asyncio.ensure_future(stores[i % 3].acquire(scope, h, limit, 30))
                for i, h in enumerate(holders)
            ]
            await asyncio.gather(*ops)
            live = await stores[2].holders(scope)
            assert len(live) <= limit and len({lease.holder for lease in live}) == len(live)
            granted = live
        clock.advance(60)


async def test_an_expired_holders_slot_is_taken_over(clients: tuple[Clock, list[Leases]]) -> None:
    clock, (a, b, _c) = clients
    scope = "hypervisor:p1/hv1"
    first = await a.acquire(scope, "w1/vm-1", 1, 10)
    assert first is not None and first.slot == 0
    assert await b.acquire(scope, "w2/vm-2", 1, 10) is None
    again = await a.acquire(scope, "w1/vm-1", 1, 10)  # a redelivered request: same slot
    assert again is not None and again.slot == first.slot
    clock.advance(11)  # w1 died: its lease ran out
    taken = await b.acquire(scope, "w2/vm-2", 1, 10)
    assert taken is not None and taken.holder == "w2/vm-2"
    with pytest.raises(LeaseLostError):
        await a.renew(scope, 0, "w1/vm-1", 10)
    assert not await a.release(scope, 0, "w1/vm-1")  # cannot free the new holder's slot
    assert [lease.holder for lease in await a.holders(scope)] == ["w2/vm-2"]
    clock.advance(5)
    renewed = await b.renew(scope, 0, "w2/vm-2", 10)
    assert renewed.expires_at == clock.now + timedelta(seconds=10)
    assert await b.release(scope, 0, "w2/vm-2")
    assert not await b.release(scope, 0, "w2/vm-2")  # idempotent
    assert await a.acquire(scope, "w1/vm-1", 1, 10) is not None


async def test_renewal_keeps_a_lease_past_its_first_ttl(
    clients: tuple[Clock, list[Leases]],
) -> None:
    clock, (a, b, _c) = clients
    scope = "run:r1"
    lease = await a.acquire(scope, "w1/vm-1", 1, 10)
    assert lease is not None
    for _ in range(5):
        clock.advance(8)
        await a.renew(scope, lease.slot, "w1/vm-1", 10)
        assert await b.acquire(scope, "w2/vm-2", 1, 10) is None
