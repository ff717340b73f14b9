"""Scrub: re-check stored chunk records on disk, and take bad ones out of service.

Each record is read back and put through the same check as an upload
(:func:`edgeback_pools.verify.verify_upload`): in a plain pool, decompressed and
re-hashed with the pool key; in an encrypted pool the node has no key, so only the
record's structure, header digest and outer checksum are checked (``outer_only`` in
the report). A chunk whose file is gone or fails the check is dropped from the index
and its file moved to ``<pool>/bad/`` (kept for inspection, not counted in the pool's
totals): from then on ``chunks/missing`` answers it missing, so the next backup that
has those bytes uploads them again, and a manifest naming it can no longer be
committed without it. Restores of existing versions that need it fail loudly (as they
would have anyway) until a backup heals it.
"""

from __future__ import annotations

import asyncio
import random
import time

import msgspec
import structlog

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.pool_wire import BadChunk, ScrubReport
from edgeback_core.errors import EdgebackError, InvalidInputError
from edgeback_pools.dedup_store import DedupChunkStore
from edgeback_pools.files import read_bytes
from edgeback_pools.pool import Pool

log = structlog.get_logger(__name__)

BAD_DIR = "bad"
_BATCH = 64


async def scrub(
    pool: Pool, *, sample: int | None = None, rng: random.Random | None = None
) -> ScrubReport:
    """Check every chunk of ``pool``, or ``sample`` picked at random; what was found."""
    store = pool.chunks
    if not isinstance(store, DedupChunkStore):
        raise InvalidInputError(
            "scrub checks dedup pools; a standard pool's versions are verified by restore"
        )
    async with pool.maintenance:
        started = time.monotonic()
        digests = [digest for digest, _ in store.entries()]
        if sample is not None and sample < len(digests):
            digests = (rng or random.SystemRandom()).sample(digests, sample)
        loop = asyncio.get_running_loop()
        checked_bytes, bad = 0, list[BadChunk]()
        for start in range(0, len(digests), _BATCH):
            batch = digests[start : start + _BATCH]
            size, found = await loop.run_in_executor(pool.executor, _check, pool, store, batch)
            checked_bytes += size
            if found:
                await store.remove(
                    [ChunkDigest(bytes.fromhex(b.digest)) for b in found], pool.directory / BAD_DIR
                )
                bad.extend(found)
        report = ScrubReport(
            pool=pool.name,
            checked=len(digests),
            checked_bytes=checked_bytes,
            bad=tuple(bad),
            outer_only=pool.info.encrypted,
            duration_s=round(time.monotonic() - started, 3),
        )
    for item in bad:
        log.error(
            "chunk.bad", pool=pool.name, chunk=item.digest, code=item.code, error=item.message
        )
    summary = msgspec.structs.asdict(report) | {"bad": len(bad)}
    log.info("pool.scrub_finished", **summary)
    return report


def _check(
    pool: Pool, store: DedupChunkStore, digests: list[ChunkDigest]
) -> tuple[int, list[BadChunk]]:
    """*Blocking*: (bytes read, the bad ones) of ``digests``."""
    size, bad = 0, []
    for digest in digests:
        try:
            record = read_bytes(store.path(digest))
            size += len(record)
            pool.verify(record, digest)
        except EdgebackError as exc:
            bad.append(BadChunk(digest=digest.hex(), code=exc.code, message=exc.message))
    return size, bad
