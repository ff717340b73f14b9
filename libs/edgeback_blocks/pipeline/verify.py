"""``verify_disk``: fetch and check every chunk of a manifest (or a random sample).

Each distinct digest is fetched once and decoded (header, lengths, keyed digest)
without writing anything. Bad chunks are collected, not raised, so one run reports all
of them; only a failure to reach the pool stops the verify.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.keys import SealKey
from edgeback_blocks.manifest import Manifest
from edgeback_blocks.pipeline import cpu
from edgeback_blocks.pipeline.progress import ProgressCallback, ProgressMeter
from edgeback_blocks.pipeline.stages import run_workers
from edgeback_blocks.pipeline.target import ChunkSource
from edgeback_core.errors import IntegrityError, NotFoundError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class BadChunk:
    digest: str
    """Hex digest."""
    indices: tuple[int, ...]
    """Chunk indices of the disk that point at it."""
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    chunks: int
    """Distinct data chunks of the manifest."""
    checked: int
    bad: tuple[BadChunk, ...]
    duration_s: float

    @property
    def ok(self) -> bool:
        return not self.bad


async def verify_disk(
    manifest: Manifest,
    *,
    source: ChunkSource,
    key: PoolKey,
    sample: int | None = None,
    in_flight: int = 8,
    rng: random.Random | None = None,
    progress: ProgressCallback | None = None,
    seal: SealKey | None = None,
) -> VerifyReport:
    """Check the chunks of ``manifest`` (all, or ``sample`` random distinct ones)."""
    started = time.monotonic()
    where: dict[ChunkDigest, list[int]] = {}
    for index, entry in enumerate(manifest.entries):
        if entry is not None:
            where.setdefault(entry, []).append(index)
    digests = list(where)
    if sample is not None and sample < len(digests):
        digests = (rng or random.Random()).sample(digests, sample)
    sizes = {digest: manifest.chunk_span(where[digest][0])[1] for digest in digests}
    meter = ProgressMeter(sum(sizes.values()), progress)
    bad: list[BadChunk] = []
    todo: Iterator[ChunkDigest] = iter(digests)
    with cpu.cpu_executor() as executor:
        loop = asyncio.get_running_loop()

        async def worker() -> None:
            for digest in todo:
                try:
                    record = await source.get_chunk(digest)
                    await loop.run_in_executor(executor, cpu.verify, record, key, digest, seal)
                except (IntegrityError, NotFoundError) as exc:
                    bad.append(_bad(digest, where[digest], exc))
                meter.add(sizes[digest])

        await run_workers(in_flight, len(digests), worker)
    meter.finish()
    report = VerifyReport(
        chunks=len(where),
        checked=len(digests),
        bad=tuple(sorted(bad, key=lambda b: b.indices)),
        duration_s=time.monotonic() - started,
    )
    log.info("disk.verified", image=manifest.header.image, checked=report.checked, bad=len(bad))
    return report


def _bad(digest: ChunkDigest, indices: list[int], exc: IntegrityError | NotFoundError) -> BadChunk:
    return BadChunk(
        digest=digest.hex(),
        indices=tuple(indices),
        code=exc.code,
        message=f"chunk {digest.hex()} (index {indices[0]}): {exc.message}",
    )
