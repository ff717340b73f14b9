"""The dedup-query batcher: few ``missing`` requests, one upload per digest, no lost waiters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.pipeline.stages import MissingBatcher, run_workers
from edgeback_blocks.pipeline.target import ChunkRecord
from edgeback_core.errors import UnavailableError


class MemoryTarget:
    """An in-memory chunk target that records the requests it gets."""

    def __init__(self, present: set[ChunkDigest] | None = None) -> None:
        self.present = set(present or ())
        self.asked: list[list[ChunkDigest]] = []
        self.fail = False

    async def missing(self, digests: Iterable[ChunkDigest]) -> set[ChunkDigest]:
        batch = list(digests)
        self.asked.append(batch)
        await asyncio.sleep(0)
        if self.fail:
            raise UnavailableError("node down")
        return {d for d in batch if d not in self.present}

    async def put_chunk(self, digest: ChunkDigest, record: ChunkRecord) -> bool:
        self.present.add(digest)
        return True


def digest(n: int) -> ChunkDigest:
    return ChunkDigest(n.to_bytes(32, "big"))


async def test_concurrent_claims_share_one_request_and_one_upload_per_digest() -> None:
    target = MemoryTarget(present={digest(1)})
    batcher = MissingBatcher(target)
    uploads: list[ChunkDigest] = []

    async def worker(d: ChunkDigest) -> None:
        if await batcher.claim(d):
            await asyncio.sleep(0.01)
            uploads.append(d)
            batcher.uploaded(d)

    wanted = [digest(1), digest(2), digest(3), digest(2), digest(3), digest(2)]
    await asyncio.gather(*(worker(d) for d in wanted))
    assert sorted(uploads) == [digest(2), digest(3)]
    assert len(target.asked) == 1 and set(target.asked[0]) == {digest(1), digest(2), digest(3)}
    # known digests are answered without asking again
    assert await batcher.claim(digest(2)) is False
    assert len(target.asked) == 1


async def test_a_duplicate_waits_for_the_claimed_upload_to_finish() -> None:
    batcher = MissingBatcher(MemoryTarget())
    assert await batcher.claim(digest(7)) is True
    second = asyncio.create_task(batcher.claim(digest(7)))
    await asyncio.sleep(0.01)
    assert not second.done()  # must not record the chunk before its upload completed
    batcher.uploaded(digest(7))
    assert await second is False


async def test_a_failed_request_fails_every_waiter() -> None:
    target = MemoryTarget()
    target.fail = True
    batcher = MissingBatcher(target)
    results = await asyncio.gather(
        *(batcher.claim(digest(n)) for n in range(3)), return_exceptions=True
    )
    # one request for all three: the first claim led it and gets the error, the two
    # that waited on it are cancelled (none is left hanging, none told "upload it")
    assert target.asked == [[digest(0), digest(1), digest(2)]]
    assert len(results) == 3
    assert isinstance(results[0], UnavailableError)
    assert [type(r) for r in results[1:]] == [asyncio.CancelledError, asyncio.CancelledError]


async def test_run_workers_raises_the_first_real_error_unwrapped() -> None:
    items = iter(range(10))

    async def work() -> None:
        for item in items:
            await asyncio.sleep(0)
            if item == 4:
                raise UnavailableError("boom", item=item)

    with pytest.raises(UnavailableError) as failed:
        await run_workers(3, 10, work)
    assert failed.value.details["item"] == 4
