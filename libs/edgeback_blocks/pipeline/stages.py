"""The stages of a disk backup, run by a fixed set of workers over shared chunk indices.

Each worker takes the next chunk index and carries that chunk through every stage:
read (at most ``streams`` reads in flight) → CPU (zero check and keyed digest on the CPU
thread pool) → dedup query (batched across workers) → encode (CPU pool, only chunks the
pool lacks) → upload (at most ``uploads`` in flight) → manifest entry. ``streams x depth``
workers bound the chunks held in memory, so memory stays near that many 4 MiB buffers
(plus their compressed records) whatever the disk size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ParamSpec, TypeVar

from edgeback_blocks import rbd
from edgeback_blocks.chunk import Compression
from edgeback_blocks.extents import chunk_span
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.keys import SealKey
from edgeback_blocks.manifest import ManifestBuilder
from edgeback_blocks.pipeline import cpu
from edgeback_blocks.pipeline.memory import Trimmer
from edgeback_blocks.pipeline.progress import ProgressMeter
from edgeback_blocks.pipeline.stats import BackupCounters
from edgeback_blocks.pipeline.target import ChunkTarget
from edgeback_core.throttle import Throttle

P = ParamSpec("P")
T = TypeVar("T")


async def run_workers(
    workers: int, items: int, work: Callable[[], Coroutine[None, None, None]]
) -> None:
    """Run ``min(workers, items)`` copies of ``work``; the first failure is raised as is.

    A TaskGroup cancels the other workers on a failure and wraps it in an exception
    group; callers want the error itself (an ``IntegrityError`` naming the chunk).
    """
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(workers, items)):
                group.create_task(work())
    except BaseExceptionGroup as failure:
        raise _first_error(failure) from None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        item = pending.pop(0)
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        else:
            leaves.append(item)
    real = [leaf for leaf in leaves if not isinstance(leaf, asyncio.CancelledError)]
    return (real or leaves)[0]


class DedupMode(StrEnum):
    AGENT = "agent"
    """Ask the pool which digests it lacks, upload only those."""
    SERVER = "server"
    """Upload every non-zero chunk; the node drops what it already has."""


class MissingBatcher:
    """Answers "must I upload this digest?" for many workers with few ``missing`` requests.

    The first worker to ask becomes the leader: it yields once so the workers that are
    ready add their digests, then sends one request for all of them. A digest is claimed
    by one worker only; others wait until its upload is done, so a checkpoint never
    records a chunk whose upload has not finished.
    """

    def __init__(self, target: ChunkTarget) -> None:
        self._target = target
        self._present: set[ChunkDigest] = set()
        self._inflight: dict[ChunkDigest, asyncio.Future[None]] = {}
        self._pending: dict[ChunkDigest, asyncio.Future[bool]] = {}
        self._leading = False

    async def claim(self, digest: ChunkDigest) -> bool:
        """True: the caller uploads the chunk, then calls ``uploaded``. False: pool has it."""
        if await self._settled(digest):
            return False
        absent = await self._ask(digest)
        if await self._settled(digest):
            return False
        if not absent:
            self._present.add(digest)
            return False
        self._inflight[digest] = asyncio.get_running_loop().create_future()
        return True

    def uploaded(self, digest: ChunkDigest) -> None:
        self._present.add(digest)
        future = self._inflight.pop(digest, None)
        if future is not None and not future.done():
            future.set_result(None)

    def abandon(self, digest: ChunkDigest) -> None:
        """The claimed upload failed: waiters stop (the backup is failing anyway)."""
        future = self._inflight.pop(digest, None)
        if future is not None:
            future.cancel()

    async def _settled(self, digest: ChunkDigest) -> bool:
        if digest in self._present:
            return True
        future = self._inflight.get(digest)
        if future is None:
            return False
        await asyncio.shield(future)
        return True

    async def _ask(self, digest: ChunkDigest) -> bool:
        future = self._pending.get(digest)
        if future is None:
            future = self._pending[digest] = asyncio.get_running_loop().create_future()
        if self._leading:
            return await future
        self._leading = True
        try:
            await asyncio.sleep(0)
            batch, self._pending = self._pending, {}
        finally:
            self._leading = False
        await self._resolve(batch)
        return await future

    async def _resolve(self, batch: dict[ChunkDigest, asyncio.Future[bool]]) -> None:
        try:
            absent = await self._target.missing(list(batch))
        except BaseException:
            for waiting in batch.values():
                waiting.cancel()
            raise
        for digest, waiting in batch.items():
            if not waiting.done():
                waiting.set_result(digest in absent)


@dataclass(frozen=True, slots=True, kw_only=True)
class StageLimits:
    streams: int
    depth: int
    uploads: int

    @property
    def workers(self) -> int:
        return max(1, self.streams * self.depth)


@dataclass(slots=True, kw_only=True)
class BackupStages:
    """One backup's stage machinery; ``run`` pushes the given chunk indices through it."""

    image: rbd.RbdImage
    target: ChunkTarget
    key: PoolKey
    builder: ManifestBuilder
    counters: BackupCounters
    meter: ProgressMeter
    executor: Executor
    compression: Compression
    dedup: DedupMode
    limits: StageLimits
    read_throttle: Throttle
    net_throttle: Throttle
    seal: SealKey | None = None
    _batcher: MissingBatcher = field(init=False)
    _read_slots: asyncio.Semaphore = field(init=False)
    _upload_slots: asyncio.Semaphore = field(init=False)
    _trimmer: Trimmer = field(init=False)

    def __post_init__(self) -> None:
        self._batcher = MissingBatcher(self.target)
        self._read_slots = asyncio.Semaphore(max(1, self.limits.streams))
        self._upload_slots = asyncio.Semaphore(max(1, self.limits.uploads))
        self._trimmer = Trimmer()

    async def run(self, indices: list[int]) -> None:
        shared = iter(indices)
        await run_workers(self.limits.workers, len(indices), lambda: self._worker(shared))

    async def _worker(self, indices: Iterator[int]) -> None:
        for index in indices:
            await self._chunk(index)

    async def _chunk(self, index: int) -> None:
        header = self.builder.header
        offset, length = chunk_span(index, header.image_size, header.chunk_size)
        async with self._read_slots:
            await self.read_throttle.acquire(length)
            data = await self.image.read(offset, length)
        self.counters.bytes_read += length
        self.counters.chunks_read += 1
        if self.dedup is DedupMode.SERVER:
            digest = await self._server_side(data)
        else:
            digest = await self._agent_side(data)
        if digest is None:
            self.counters.bytes_sparse += length
        self.builder.set(index, digest)
        self.meter.add(length)
        self._trimmer.count()

    async def _server_side(self, data: bytes) -> ChunkDigest | None:
        digest, record = await self._cpu(
            cpu.digest_and_encode, self.key, data, self.compression, self.seal
        )
        if digest is not None and record is not None:
            await self._upload(digest, record, len(data))
        return digest

    async def _agent_side(self, data: bytes) -> ChunkDigest | None:
        digest = await self._cpu(cpu.digest_of, self.key, data)
        if digest is None:
            return None
        if not await self._batcher.claim(digest):
            self.counters.bytes_deduped += len(data)
            return digest
        try:
            record = await self._cpu(cpu.encode, data, digest, self.compression, self.seal)
            await self._upload(digest, record, len(data))
        except BaseException:
            self._batcher.abandon(digest)
            raise
        self._batcher.uploaded(digest)
        return digest

    async def _upload(self, digest: ChunkDigest, record: cpu.RecordParts, raw_length: int) -> None:
        header, payload = record
        size = len(header) + memoryview(payload).nbytes
        async with self._upload_slots:
            await self.net_throttle.acquire(size)
            created = await self.target.put_chunk(digest, record)
        self.counters.bytes_uploaded += size
        if created:
            self.counters.bytes_new += raw_length
            self.counters.chunks_new += 1
        else:
            self.counters.bytes_deduped += raw_length

    async def _cpu(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))
