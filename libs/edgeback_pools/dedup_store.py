"""The dedup chunk store: one content-addressed directory shared by every disk version.

A chunk that is already present is never written again (server-side dedup), and two
concurrent uploads of the same new chunk write it once: the second waits for the
first (or retries if the first fails). Removal (GC, scrub) uses the same pending
guard, so an upload never races the unlink of the same file. File I/O runs in the
node's thread pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

from edgeback_blocks.ids import ChunkDigest
from edgeback_core.errors import NotFoundError
from edgeback_pools.content_dir import ChunkCounts, ChunkDirectory
from edgeback_pools.names import SafeName

CHUNKS_DIR = "chunks"


class DedupChunkStore:
    def __init__(self, chunks: ChunkDirectory, executor: Executor) -> None:
        self._chunks = chunks
        self._executor = executor
        self._pending: dict[ChunkDigest, asyncio.Future[None]] = {}

    @classmethod
    async def open(cls, root: Path, executor: Executor) -> DedupChunkStore:
        """Open (scan) the content-addressed directory ``root``, e.g. ``<pool>/chunks``."""
        loop = asyncio.get_running_loop()
        chunks = await loop.run_in_executor(executor, ChunkDirectory.open, root)
        return cls(chunks, executor)

    def missing(
        self, digests: Sequence[ChunkDigest], version: SafeName | None
    ) -> list[ChunkDigest]:
        return [d for d in digests if d not in self._chunks]

    def holds(self, digest: ChunkDigest, version: SafeName | None) -> bool:
        return digest in self._chunks

    async def put(
        self, digest: ChunkDigest, record: bytes | memoryview, version: SafeName | None
    ) -> bool:
        while digest not in self._chunks:
            pending = self._pending.get(digest)
            if pending is None:
                await self._write_once(digest, record)
                return True
            # another upload of this chunk is writing it: wait, then look again (it may fail)
            await asyncio.wait([pending])
        return False

    async def _write_once(self, digest: ChunkDigest, record: bytes | memoryview) -> None:
        finished = asyncio.get_running_loop().create_future()
        self._pending[digest] = finished
        try:
            await self._write(digest, record)
        finally:
            del self._pending[digest]
            finished.set_result(None)

    async def _write(self, digest: ChunkDigest, record: bytes | memoryview) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._chunks.write, digest, record)
        self._chunks.added(digest, len(record))

    async def get(self, digest: ChunkDigest, version: SafeName | None) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._chunks.read, digest)

    def locate(self, digest: ChunkDigest, version: SafeName | None) -> Path:
        if digest not in self._chunks:
            raise NotFoundError(f"chunk {digest.hex()} not found", chunk=digest.hex())
        return self._chunks.path(digest)

    def counts(self) -> ChunkCounts:
        return self._chunks.counts()

    def entries(self) -> list[tuple[ChunkDigest, int]]:
        return self._chunks.entries()

    def path(self, digest: ChunkDigest) -> Path:
        return self._chunks.path(digest)

    def ages(self, digests: Sequence[ChunkDigest], now: float) -> list[float]:
        """*Blocking*: seconds since each chunk's file was written (inf if gone)."""
        return [self._chunks.age_s(digest, now) for digest in digests]

    async def remove(
        self, digests: Sequence[ChunkDigest], aside: Path | None = None
    ) -> ChunkCounts:
        """Drop chunks (GC, or bad ones moved ``aside``); how many and their bytes.

        The index forgets them first, on the loop, so from then on ``missing`` answers
        them missing and the manifest check refuses them. While the files go they are
        pending: an upload of one waits, then writes it anew (never racing the unlink).
        A chunk being uploaded right now is skipped. Unlinks are not fsynced: after a
        crash a removed file may come back, and is indexed and collected again.
        """
        sizes: dict[ChunkDigest, int] = {}
        for digest in digests:
            if digest not in self._pending:
                size = self._chunks.dropped(digest)
                if size is not None:
                    sizes[digest] = size
        if not sizes:
            return ChunkCounts(chunks=0, stored_bytes=0)
        finished = asyncio.get_running_loop().create_future()
        for digest in sizes:
            self._pending[digest] = finished
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._chunks.remove, list(sizes), aside)
        except BaseException:
            for digest, size in sizes.items():  # files may still be there: keep them counted
                self._chunks.added(digest, size)
            raise
        finally:
            for digest in sizes:
                del self._pending[digest]
            finished.set_result(None)
        return ChunkCounts(chunks=len(sizes), stored_bytes=sum(sizes.values()))
