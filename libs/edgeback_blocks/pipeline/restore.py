"""``restore_disk``: write one manifest's chunks back into an RBD image, verified first.

Workers fetch chunk records with many requests in flight, decode them on the CPU pool
(``ChunkDecoder`` checks the header, the lengths and the keyed digest) and only then
write the data, so a corrupt chunk stops the restore with an ``IntegrityError`` naming
the chunk and nothing wrong is ever written. Runs of zero chunks become one
``write_zeroes`` each, or nothing when the target is a new image known to be empty.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import structlog

from edgeback_blocks import rbd
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.keys import SealKey
from edgeback_blocks.manifest import Manifest
from edgeback_blocks.pipeline import cpu
from edgeback_blocks.pipeline.progress import ProgressCallback, ProgressMeter
from edgeback_blocks.pipeline.stages import run_workers
from edgeback_blocks.pipeline.stats import RestoreStats
from edgeback_blocks.pipeline.target import ChunkSource
from edgeback_core.errors import IntegrityError, InvalidInputError
from edgeback_core.throttle import UNLIMITED, Throttle

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreOptions:
    in_flight: int = 8
    """Chunks fetched, decoded or written at once (each holds up to two 4 MiB buffers)."""
    writes: int = 4
    """Image writes in flight."""
    target_is_zero: bool = False
    """The target is a new image: zero chunks need no write at all."""
    grow: bool = True
    """Grow a target smaller than the disk; False refuses such a target."""
    cpu_threads: int | None = None
    write_throttle: Throttle = UNLIMITED
    net_throttle: Throttle = UNLIMITED
    progress: ProgressCallback | None = None
    progress_interval_s: float = 0.5
    seal: SealKey | None = None
    """The chunk sealing key of an encrypted pool."""


def zero_runs(entries: tuple[ChunkDigest | None, ...]) -> Iterator[tuple[int, int]]:
    """(first index, count) of each run of consecutive zero entries."""
    start: int | None = None
    for index, entry in enumerate(entries):
        if entry is None and start is None:
            start = index
        elif entry is not None and start is not None:
            yield start, index - start
            start = None
    if start is not None:
        yield start, len(entries) - start


@dataclass(slots=True)
class _Tally:
    fetched: int = 0
    bytes_fetched: int = 0
    bytes_written: int = 0
    bytes_zeroed: int = 0


class _Restore:
    """The work of one restore: zero ranges and data chunks, shared by the workers."""

    def __init__(
        self,
        manifest: Manifest,
        image: rbd.RbdImage,
        source: ChunkSource,
        key: PoolKey,
        opts: RestoreOptions,
    ) -> None:
        self.manifest, self.image, self.source, self.key, self.opts = (
            manifest, image, source, key, opts,
        )  # fmt: skip
        self.data = [i for i, entry in enumerate(manifest.entries) if entry is not None]
        self.zeroes = [] if opts.target_is_zero else _zero_ranges(manifest)
        total = sum(manifest.chunk_span(i)[1] for i in self.data)
        total += sum(length for _, length in self.zeroes)
        self.meter = ProgressMeter(total, opts.progress, interval_s=opts.progress_interval_s)
        self.tally = _Tally()
        self._writes = asyncio.Semaphore(max(1, opts.writes))
        self._jobs: Iterator[Awaitable[None]] = iter(())

    async def run(self, executor: Executor) -> None:
        # coroutines are created lazily, one per job as a worker takes it
        self._jobs = itertools.chain(
            (self._zero(offset, length) for offset, length in self.zeroes),
            (self._chunk(index, executor) for index in self.data),
        )
        count = len(self.zeroes) + len(self.data)
        await run_workers(self.opts.in_flight, count, self._worker)

    async def _worker(self) -> None:
        for job in self._jobs:
            await job

    async def _zero(self, offset: int, length: int) -> None:
        async with self._writes:
            await self.opts.write_throttle.acquire(length)
            await self.image.write_zeroes(offset, length)
        self.tally.bytes_zeroed += length
        self.meter.add(length)

    async def _chunk(self, index: int, executor: Executor) -> None:
        digest = self.manifest.entries[index]
        if digest is None:
            raise AssertionError("zero chunks have no record")
        offset, length = self.manifest.chunk_span(index)
        record = await self.source.get_chunk(digest)
        self.tally.bytes_fetched += len(record)
        await self.opts.net_throttle.acquire(len(record))
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(
                executor, cpu.decode, record, self.key, digest, self.opts.seal
            )
        except IntegrityError as exc:
            raise _at_index(exc, index, offset, image=self.manifest.header.image) from exc
        del record
        async with self._writes:
            await self.opts.write_throttle.acquire(length)
            await self.image.write(offset, data)
        self.tally.fetched += 1
        self.tally.bytes_written += length
        self.meter.add(length)


async def restore_disk(
    manifest: Manifest,
    image: rbd.RbdImage,
    *,
    source: ChunkSource,
    key: PoolKey,
    options: RestoreOptions | None = None,
) -> RestoreStats:
    """Make ``image`` hold the disk ``manifest`` describes (its first bytes, if larger).

    Every chunk is verified before it is written; a corrupt or missing chunk stops the
    restore with an ``IntegrityError`` (or ``NotFoundError``) naming it.
    """
    opts = options or RestoreOptions()
    started, cpu_started = time.monotonic(), time.process_time()
    await _fit_target(image, manifest, grow=opts.grow)
    work = _Restore(manifest, image, source, key, opts)
    with cpu.cpu_executor(opts.cpu_threads) as executor:
        await work.run(executor)
    await image.flush()
    work.meter.finish()
    tally = work.tally
    stats = RestoreStats(
        image_size=manifest.header.image_size,
        chunks=len(manifest.entries),
        chunks_fetched=tally.fetched,
        bytes_fetched=tally.bytes_fetched,
        bytes_written=tally.bytes_written,
        bytes_zeroed=tally.bytes_zeroed,
        duration_s=time.monotonic() - started,
        cpu_s=time.process_time() - cpu_started,
    )
    log.info("disk.restored", image=manifest.header.image, **stats.to_dict())
    return stats


async def _fit_target(image: rbd.RbdImage, manifest: Manifest, *, grow: bool) -> None:
    size, needed = await image.size(), manifest.header.image_size
    if size >= needed:
        return
    if not grow:
        raise InvalidInputError(
            f"target image holds {size} bytes, the disk needs {needed}",
            target_size=size,
            disk_size=needed,
        )
    await image.resize(needed)


def _zero_ranges(manifest: Manifest) -> list[tuple[int, int]]:
    """Byte ranges of zero runs, cut at 1 GiB so no single call runs too long."""
    ranges: list[tuple[int, int]] = []
    step = max(1, (1 << 30) // manifest.header.chunk_size)
    for first, count in zero_runs(manifest.entries):
        for start in range(first, first + count, step):
            last = min(first + count, start + step) - 1
            offset = manifest.chunk_span(start)[0]
            end = sum(manifest.chunk_span(last))
            ranges.append((offset, end - offset))
    return ranges


def _at_index(exc: IntegrityError, index: int, offset: int, *, image: str) -> IntegrityError:
    """The same error class, its message naming the chunk index and image offset too."""
    details = {**exc.details, "index": index, "offset": offset, "image": image}
    return type(exc)(f"chunk {index} (offset {offset}) of {image}: {exc.message}", **details)
