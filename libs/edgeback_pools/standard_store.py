"""The standard chunk store: no dedup, every disk version keeps its own chunks.

Layout: ``versions/<version_id>/<2 hex>/<64 hex>``, one content-addressed directory
per version (the same durable file writes and index as the dedup store), so nothing is
shared between versions and deleting a version is removing one directory. Chosen over
one append-only stream file per version because it needs no offset index of its own,
stays crash-safe chunk by chunk (a resumed backup keeps what was written) and takes
concurrent uploads without serialising them through a file offset. Within one version
a repeated chunk is stored once. Uploads and queries must name the version.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

from edgeback_blocks.ids import ChunkDigest
from edgeback_core.errors import InvalidInputError, NotFoundError
from edgeback_pools.content_dir import ChunkCounts
from edgeback_pools.dedup_store import DedupChunkStore
from edgeback_pools.names import SafeName, safe_name

VERSIONS_DIR = "versions"


class StandardChunkStore:
    def __init__(
        self, root: Path, versions: dict[SafeName, DedupChunkStore], executor: Executor
    ) -> None:
        self._root = root
        self._versions = versions
        self._executor = executor
        self._opening: dict[SafeName, asyncio.Future[DedupChunkStore]] = {}
        self._touched: dict[SafeName, float] = {}
        self._clock = time.monotonic

    @classmethod
    async def open(cls, pool_dir: Path, executor: Executor) -> StandardChunkStore:
        root = pool_dir / VERSIONS_DIR
        loop = asyncio.get_running_loop()
        names = await loop.run_in_executor(executor, _version_names, root)
        versions = {name: await DedupChunkStore.open(root / name, executor) for name in names}
        return cls(root, versions, executor)

    def missing(
        self, digests: Sequence[ChunkDigest], version: SafeName | None
    ) -> list[ChunkDigest]:
        store = self._versions.get(self._touch(version))
        return list(digests) if store is None else store.missing(digests, version)

    def holds(self, digest: ChunkDigest, version: SafeName | None) -> bool:
        store = self._versions.get(_required(version))
        return store is not None and store.holds(digest, version)

    async def put(
        self, digest: ChunkDigest, record: bytes | memoryview, version: SafeName | None
    ) -> bool:
        store = await self._version_store(self._touch(version))
        return await store.put(digest, record, version)

    async def get(self, digest: ChunkDigest, version: SafeName | None) -> bytes:
        store = self._versions.get(_required(version))
        if store is None:
            raise NotFoundError("no chunks stored for this version", version=version)
        return await store.get(digest, version)

    def locate(self, digest: ChunkDigest, version: SafeName | None) -> Path:
        store = self._versions.get(_required(version))
        if store is None:
            raise NotFoundError("no chunks stored for this version", version=version)
        return store.locate(digest, version)

    def counts(self) -> ChunkCounts:
        parts = [store.counts() for store in self._versions.values()]
        return ChunkCounts(
            chunks=sum(p.chunks for p in parts), stored_bytes=sum(p.stored_bytes for p in parts)
        )

    # --- garbage collection (edgeback_pools.gc) -------------------------------------

    def version_names(self) -> list[SafeName]:
        return sorted(self._versions)

    def version_counts(self, version: SafeName) -> ChunkCounts:
        return self._versions[version].counts()

    def touched_within(self, version: SafeName, window_s: float) -> bool:
        """Whether a client asked about or uploaded to ``version`` in the last ``window_s``."""
        touched = self._touched.get(version)
        return touched is not None and self._clock() - touched <= window_s

    def version_age_s(self, version: SafeName, now: float) -> float:
        """*Blocking*: seconds since the newest file of the version was written."""
        newest = 0.0
        for path in (self._root / version).rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, path.stat().st_mtime)
        return now - newest

    async def remove_version(self, version: SafeName) -> None:
        """Forget a version, then delete its directory (no upload can be writing to it:
        GC removes only versions not touched within the pin window)."""
        self._versions.pop(version, None)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, functools.partial(shutil.rmtree, self._root / version, True)
        )

    def _touch(self, version: SafeName | None) -> SafeName:
        name = _required(version)
        self._touched[name] = self._clock()
        return name

    async def _version_store(self, version: SafeName) -> DedupChunkStore:
        store = self._versions.get(version)
        if store is not None:
            return store
        # concurrent first uploads of a version share one open (one directory scan)
        opening = self._opening.get(version)
        if opening is None:
            opening = asyncio.ensure_future(
                DedupChunkStore.open(self._root / version, self._executor)
            )
            self._opening[version] = opening
        try:
            store = await asyncio.shield(opening)
        finally:
            self._opening.pop(version, None)
        self._versions[version] = store
        return store


def _required(version: SafeName | None) -> SafeName:
    if version is None:
        raise InvalidInputError("a standard pool needs the disk version (?version=)")
    return version


def _version_names(root: Path) -> list[SafeName]:
    root.mkdir(parents=True, exist_ok=True)
    names: list[SafeName] = []
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            try:
                names.append(safe_name(entry.name, what="version"))
            except InvalidInputError:
                continue
    return names
