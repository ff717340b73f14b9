"""Garbage collection of a pool: mark from every manifest and checkpoint, sweep the rest.

Mark: every committed manifest (quarantined ones too: their chunks are not garbage
until an operator deletes them) and every checkpoint of a run in progress is read
and its chunk references collected; one that cannot be read stops the collection
(``ConflictError``), since what it references is unknown. Sweep: a chunk that nothing
references is removed only if it is also

- older than the grace period (file mtime): chunks uploaded by a run whose manifest
  is not committed yet, and not yet in its checkpoint, survive; and
- not pinned: not answered "present" to a client, nor uploaded, within the pin window
  (:mod:`edgeback_pools.pins`), so a backup that relies on an old, unreferenced chunk
  it was told is present keeps it.

The pin check and the removal from the index happen in one step on the event loop,
so a ``missing`` answer or upload either comes first (and pins the chunk) or after
(and sees it missing, and uploads it again). Standard pools have no shared chunks:
there, a version directory that no manifest or checkpoint names, not written within
the grace period nor touched within the pin window, is removed whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import structlog

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.pool_wire import GcReport
from edgeback_pools.dedup_store import DedupChunkStore
from edgeback_pools.pool import Pool
from edgeback_pools.references import References, references
from edgeback_pools.standard_store import StandardChunkStore

log = structlog.get_logger(__name__)

_BATCH = 512


@dataclass(slots=True, kw_only=True)
class _Sweep:
    pool: Pool
    refs: References
    grace_s: float
    dry_run: bool
    now: float
    examined: int = 0
    kept_recent: int = 0
    kept_pinned: int = 0
    removed_chunks: int = 0
    removed_bytes: int = 0
    versions_removed: int = 0

    async def chunks(self, store: DedupChunkStore) -> None:
        entries = store.entries()
        sizes = dict(entries)
        self.examined = len(entries)
        unreferenced = [digest for digest, _ in entries if digest not in self.refs.digests]
        loop = asyncio.get_running_loop()
        for start in range(0, len(unreferenced), _BATCH):
            batch = unreferenced[start : start + _BATCH]
            ages = await loop.run_in_executor(self.pool.executor, store.ages, batch, self.now)
            old = [d for d, age in zip(batch, ages, strict=True) if age >= self.grace_s]
            self.kept_recent += len(batch) - len(old)
            # from here to the removal from the index: no await (see the module docstring)
            doomed: list[ChunkDigest] = [d for d in old if d not in self.pool.pins]
            self.kept_pinned += len(old) - len(doomed)
            if self.dry_run:
                self.removed_chunks += len(doomed)
                self.removed_bytes += sum(sizes[d] for d in doomed)
                continue
            removed = await store.remove(doomed)
            self.removed_chunks += removed.chunks
            self.removed_bytes += removed.stored_bytes

    async def versions(self, store: StandardChunkStore) -> None:
        names = store.version_names()
        self.examined = len(names)
        loop = asyncio.get_running_loop()
        for name in names:
            if name in self.refs.versions:
                continue
            age = await loop.run_in_executor(
                self.pool.executor, store.version_age_s, name, self.now
            )
            if age < self.grace_s:
                self.kept_recent += 1
                continue
            if store.touched_within(name, self.pool.pins.ttl_s):
                self.kept_pinned += 1
                continue
            counts = store.version_counts(name)
            self.versions_removed += 1
            self.removed_chunks += counts.chunks
            self.removed_bytes += counts.stored_bytes
            if not self.dry_run:
                await store.remove_version(name)


async def collect_garbage(
    pool: Pool,
    *,
    grace_s: float,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> GcReport:
    """Mark and sweep ``pool`` (one maintenance pass at a time); what it did."""
    async with pool.maintenance:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        refs = await loop.run_in_executor(pool.executor, references, pool.directory)
        sweep = _Sweep(pool=pool, refs=refs, grace_s=grace_s, dry_run=dry_run, now=clock())
        if isinstance(pool.chunks, DedupChunkStore):
            await sweep.chunks(pool.chunks)
        elif isinstance(pool.chunks, StandardChunkStore):
            await sweep.versions(pool.chunks)
        report = GcReport(
            pool=pool.name,
            dry_run=dry_run,
            grace_s=grace_s,
            manifests=refs.manifests,
            checkpoints=refs.checkpoints,
            referenced=len(refs.digests),
            examined=sweep.examined,
            kept_recent=sweep.kept_recent,
            kept_pinned=sweep.kept_pinned,
            removed_chunks=sweep.removed_chunks,
            removed_bytes=sweep.removed_bytes,
            versions_removed=sweep.versions_removed,
            duration_s=round(time.monotonic() - started, 3),
        )
    log.info("pool.gc_finished", **msgspec.structs.asdict(report))
    return report
