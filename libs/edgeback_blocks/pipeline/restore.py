"""``restore_disk``: write one manifest's chunks back into an RBD image, verified first.

Workers fetch chunk records with many requests in flight, decode them on the CPU pool
(``ChunkDecoder`` checks the header, the lengths and the keyed digest) and only then
write the data, so a corrupt chunk stops the restore with an ``IntegrityError`` naming
the chunk and nothing wrong is ever written. Runs of zero chunks become one
``write_zeroes`` each, or nothing when the target is a new image known to be empty.

Scope: ``changed`` names the chunks where the target may differ from the disk (those
that changed since the backup's own snapshot, when the target is the image it was
taken of and still holds it): no other chunk is fetched or written. ``allocated``
names the chunks the target holds data in: a zero chunk outside them reads as zeros
already and is not written.

Resume: the work is a list of segments in chunk order (one data chunk, or a run of
zero chunks). With a ``checkpoint`` sink the restore flushes the image every
``checkpoint_interval_s`` and hands the sink its watermark, the first chunk index
whose segment is not yet written (every chunk below it is on the image). A restore
given that index as ``resume_from`` skips every segment that ends at or below it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Container, Iterable, Iterator
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


RestoreCheckpointSink = Callable[[int], Awaitable[None]]
"""Stores a restore's watermark: every chunk below it is written and flushed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreOptions:
    in_flight: int = 8
    """Chunks fetched, decoded or written at once (each holds up to two 4 MiB buffers)."""
    writes: int = 4
    """Image writes in flight."""
    target_is_zero: bool = False
    """The target is a new image: zero chunks need no write at all."""
    changed: Container[int] | None = None
    """Only these chunks may differ on the target (None: any): the others are left."""
    allocated: Container[int] | None = None
    """The target holds data only in these chunks (None: anywhere): a zero chunk
    elsewhere is left, it reads as zeros."""
    grow: bool = True
    """Grow a target smaller than the disk; False refuses such a target."""
    cpu_threads: int | None = None
    write_throttle: Throttle = UNLIMITED
    net_throttle: Throttle = UNLIMITED
    progress: ProgressCallback | None = None
    progress_interval_s: float = 0.5
    seal: SealKey | None = None
    """The chunk sealing key of an encrypted pool."""
    resume_from: int = 0
    """Every chunk below this index is on the image already (a checkpoint's watermark)."""
    checkpoint: RestoreCheckpointSink | None = None
    checkpoint_interval_s: float = 5.0


def zero_runs(entries: tuple[ChunkDigest | None, ...]) -> Iterator[tuple[int, int]]:
    """(first index, count) of each run of consecutive zero entries."""
    return _runs(entry is None for entry in entries)


def _runs(flags: Iterable[bool]) -> Iterator[tuple[int, int]]:
    """(first index, count) of each run of consecutive true ``flags``."""
    start: int | None = None
    index = -1
    for index, flag in enumerate(flags):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            yield start, index - start
            start = None
    if start is not None:
        yield start, index + 1 - start


@dataclass(slots=True)
class _Tally:
    fetched: int = 0
    bytes_fetched: int = 0
    bytes_written: int = 0
    bytes_zeroed: int = 0


@dataclass(frozen=True, slots=True)
class Segment:
    """Chunks ``first`` .. ``first + count - 1``: one data chunk, or a run of zero chunks."""

    first: int
    count: int
    zero: bool

    @property
    def end(self) -> int:
        return self.first + self.count


def segments(
    entries: tuple[ChunkDigest | None, ...],
    *,
    zero_step: int,
    with_zeroes: bool = True,
    changed: Container[int] | None = None,
    allocated: Container[int] | None = None,
) -> list[Segment]:
    """The work of a restore in chunk order; zero runs cut every ``zero_step`` chunks.

    Only chunks in ``changed`` (None: all); zero chunks only in ``allocated`` (None: all).
    """

    def wanted(index: int, among: Container[int] | None) -> bool:
        return among is None or index in among

    found = [
        Segment(i, 1, zero=False)
        for i, entry in enumerate(entries)
        if entry is not None and wanted(i, changed)
    ]
    if with_zeroes:
        zeroes = (
            entry is None and wanted(i, changed) and wanted(i, allocated)
            for i, entry in enumerate(entries)
        )
        for first, count in _runs(zeroes):
            for start in range(first, first + count, zero_step):
                found.append(Segment(start, min(first + count, start + zero_step) - start, True))
    return sorted(found, key=lambda seg: seg.first)


class Watermark:
    """The first chunk index whose segment is not done yet, as segments finish in any order."""

    def __init__(self, work: list[Segment], total: int) -> None:
        self._work, self._total = work, total
        self._done = [False] * len(work)
        self._next = 0

    def finish(self, position: int) -> None:
        self._done[position] = True
        while self._next < len(self._work) and self._done[self._next]:
            self._next += 1

    @property
    def value(self) -> int:
        return self._work[self._next].first if self._next < len(self._work) else self._total


class _Restore:
    """The work of one restore: segments in chunk order, shared by the workers."""

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
        step = max(1, (1 << 30) // manifest.header.chunk_size)
        every = segments(
            manifest.entries, zero_step=step, with_zeroes=not opts.target_is_zero,
            changed=opts.changed, allocated=opts.allocated,
        )  # fmt: skip
        self.work = [seg for seg in every if seg.end > opts.resume_from]
        covered = {i for seg in every for i in range(seg.first, seg.end)}
        self.left = sum(
            manifest.chunk_span(i)[1]
            for i in range(opts.resume_from, len(manifest.entries))
            if i not in covered
        )
        # the whole disk, what a checkpoint covers and what needs no write counted done
        size = manifest.header.image_size
        self.meter = ProgressMeter(
            size,
            opts.progress,
            interval_s=opts.progress_interval_s,
            already=size - sum(self._span(seg)[1] for seg in self.work),
        )
        self.tally = _Tally()
        self.mark = Watermark(self.work, len(manifest.entries))
        self._writes = asyncio.Semaphore(max(1, opts.writes))
        self._jobs: Iterator[tuple[int, Segment]] = iter(())
        self._saved, self._saving = opts.resume_from, asyncio.Lock()
        self._last_save = time.monotonic()

    def _span(self, seg: Segment) -> tuple[int, int]:
        offset = self.manifest.chunk_span(seg.first)[0]
        return offset, sum(self.manifest.chunk_span(seg.end - 1)) - offset

    async def run(self, executor: Executor) -> None:
        self._jobs = iter(enumerate(self.work))
        await run_workers(self.opts.in_flight, len(self.work), lambda: self._worker(executor))

    async def _worker(self, executor: Executor) -> None:
        for position, seg in self._jobs:
            if seg.zero:
                await self._zero(*self._span(seg))
            else:
                await self._chunk(seg.first, executor)
            self.mark.finish(position)
            await self.checkpoint()

    async def checkpoint(self, *, final: bool = False) -> None:
        sink = self.opts.checkpoint
        due = time.monotonic() - self._last_save >= self.opts.checkpoint_interval_s
        if sink is None or not (due or final) or self._saving.locked():
            return
        async with self._saving:
            mark = self.mark.value
            if mark <= self._saved:
                return
            # only what a flush made durable may be claimed as written
            await self.image.flush()
            await sink(mark)
            self._saved, self._last_save = mark, time.monotonic()

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
    await work.checkpoint(final=True)
    work.meter.finish()
    tally = work.tally
    stats = RestoreStats(
        image_size=manifest.header.image_size,
        chunks=len(manifest.entries),
        chunks_fetched=tally.fetched,
        bytes_fetched=tally.bytes_fetched,
        bytes_written=tally.bytes_written,
        bytes_zeroed=tally.bytes_zeroed,
        bytes_left=work.left,
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


def _at_index(exc: IntegrityError, index: int, offset: int, *, image: str) -> IntegrityError:
    """The same error class, its message naming the chunk index and image offset too."""
    details = {**exc.details, "index": index, "offset": offset, "image": image}
    return type(exc)(f"chunk {index} (offset {offset}) of {image}: {exc.message}", **details)
