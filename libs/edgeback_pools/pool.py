"""One open storage pool: its identity, chunk store, manifests, capacity and upload checks.

Uploads are verified against the pool key before anything is stored, and admitted
against the pool's free space (quota and filesystem) counting the bytes that other
uploads in flight have reserved. A chunk the pool already holds is still verified
(a wrong upload is always refused loudly) but needs no space.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from edgeback_blocks import sealed
from edgeback_blocks.chunk import CHUNK_SIZE, HEADER_SIZE
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.pool_wire import PoolKind, PoolStatus
from edgeback_core.errors import ConflictError, InvalidInputError
from edgeback_pools.capacity import Capacity, filesystem_space
from edgeback_pools.checkpoint_store import CheckpointStore, Writer
from edgeback_pools.chunk_store import ChunkStore
from edgeback_pools.dedup_store import CHUNKS_DIR, DedupChunkStore
from edgeback_pools.manifest_store import ManifestFacts, ManifestName, ManifestStore
from edgeback_pools.names import SafeName
from edgeback_pools.pins import RecentDigests
from edgeback_pools.pool_meta import PoolInfo, read_pool
from edgeback_pools.standard_store import StandardChunkStore
from edgeback_pools.verify import verify_upload

MAX_RECORD_SIZE = HEADER_SIZE + CHUNK_SIZE + sealed.OVERHEAD
"""The largest record: a raw 4 MiB chunk, sealed (encrypted pools)."""

DEFAULT_PIN_TTL_S = 24 * 3600.0
"""How long a chunk the node vouched for (present answer, upload) is safe from GC."""


@dataclass(kw_only=True)
class Pool:
    info: PoolInfo
    key: PoolKey
    directory: Path
    chunks: ChunkStore
    manifests: ManifestStore
    checkpoints: CheckpointStore
    executor: Executor
    pins: RecentDigests
    reserved: int = 0
    maintenance: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by GC and scrub: one maintenance pass of a pool at a time."""

    @classmethod
    async def open(
        cls, directory: Path, executor: Executor, *, pin_ttl_s: float = DEFAULT_PIN_TTL_S
    ) -> Pool:
        loop = asyncio.get_running_loop()
        info, key = await loop.run_in_executor(executor, read_pool, directory)
        chunks: ChunkStore
        if info.kind is PoolKind.DEDUP:
            chunks = await DedupChunkStore.open(directory / CHUNKS_DIR, executor)
        else:
            chunks = await StandardChunkStore.open(directory, executor)
        manifests = ManifestStore(directory, ManifestFacts.of, executor)
        await manifests.open()
        checkpoints = CheckpointStore(directory, executor)
        await checkpoints.open()
        return cls(
            info=info,
            key=PoolKey(key),
            directory=directory,
            chunks=chunks,
            manifests=manifests,
            checkpoints=checkpoints,
            executor=executor,
            pins=RecentDigests(pin_ttl_s),
        )

    @property
    def name(self) -> str:
        return self.info.name

    def pool_bytes(self) -> int:
        return (
            self.chunks.counts().stored_bytes
            + self.manifests.stored_bytes
            + self.checkpoints.stored_bytes
        )

    def missing(
        self, digests: Sequence[ChunkDigest], version: SafeName | None
    ) -> list[ChunkDigest]:
        """Those of ``digests`` the pool lacks; the others are pinned against GC."""
        absent = self.chunks.missing(digests, version)
        if version is None and len(absent) < len(digests):
            gone = set(absent)
            self.pins.add(d for d in digests if d not in gone)
        return absent

    async def put_chunk(
        self, digest: ChunkDigest, record: bytes | memoryview, version: SafeName | None
    ) -> bool:
        """Verify and store an uploaded record; ``True`` if it was new."""
        if len(record) > MAX_RECORD_SIZE:
            raise InvalidInputError("chunk record too large", length=len(record))
        # pinned before any await: GC decides on the loop, so it sees this pin
        self.pins.add((digest,))
        loop = asyncio.get_running_loop()
        if self.chunks.holds(digest, version):
            await loop.run_in_executor(self.executor, self.verify, record, digest)
            return False
        # counters are read here on the loop: threads get a snapshot, never the live dicts
        size, reserved, used = len(record), self.reserved, self.pool_bytes()
        self.reserved += size
        try:
            await loop.run_in_executor(self.executor, self._admit, record, digest, reserved, used)
            return await self.chunks.put(digest, record, version)
        finally:
            self.reserved -= size

    def _admit(
        self, record: bytes | memoryview, digest: ChunkDigest, reserved: int, used: int
    ) -> None:
        """*Blocking*: verify, then check the space (quota and filesystem) for ``record``."""
        self.verify(record, digest)
        self._capacity(used).admit(len(record), reserved=reserved, pool=self.name)

    def verify(self, record: bytes | memoryview, digest: ChunkDigest) -> None:
        """*Blocking*: what the node can check of an upload (``verify_upload``)."""
        verify_upload(record, digest, self.key, sealed=self.info.encrypted)

    def _capacity(self, used: int) -> Capacity:
        """*Blocking* (statvfs): capacity given ``used`` bytes of the pool."""
        return Capacity.of(
            filesystem_space(self.directory), pool_bytes=used, quota=self.info.quota_bytes
        )

    async def get_chunk(self, digest: ChunkDigest, version: SafeName | None) -> bytes:
        return await self.chunks.get(digest, version)

    async def put_manifest(self, name: ManifestName, data: bytes) -> bool:
        await self._admit_small(len(data))
        return await self.manifests.put(name, data, check=lambda facts: self._check(name, facts))

    async def delete_manifest(self, name: ManifestName) -> int:
        """Remove a committed manifest (retention); its chunks wait for GC. Its size."""
        return await self.manifests.delete(name)

    async def put_checkpoint(self, name: ManifestName, data: bytes, writer: Writer) -> None:
        """Store a checkpoint owned by ``writer``, counted against the quota."""
        await self.checkpoints.put(name, data, writer, admit=self._admit_small)

    async def _admit_small(self, size: int) -> None:
        """Refuse ``size`` more bytes (a manifest, a checkpoint) if they do not fit."""
        loop = asyncio.get_running_loop()
        capacity = await loop.run_in_executor(self.executor, self._capacity, self.pool_bytes())
        capacity.admit(size, reserved=self.reserved, pool=self.name)

    def _check(self, name: ManifestName, facts: ManifestFacts) -> None:
        sealed = facts.vm is None  # an encrypted pool: the restore checks vm and disk
        if not sealed and (facts.vm, facts.disk) != (name.vm, name.disk):
            raise InvalidInputError(
                "the manifest describes another VM disk than its name says",
                manifest_vm=facts.vm,
                manifest_disk=facts.disk,
                vm=name.vm,
                disk=name.disk,
            )
        absent = [d for d in facts.digests if not self.chunks.holds(d, name.version)]
        if not absent and self.maintenance.locked():
            # committed while GC may be past its mark: keep what it references
            self.pins.add(facts.digests)
        if absent:
            raise ConflictError(
                f"the manifest references {len(absent)} chunk(s) the pool does not hold",
                missing=len(absent),
                first_missing=absent[0].hex(),
            )

    async def status(self) -> PoolStatus:
        loop = asyncio.get_running_loop()
        capacity = await loop.run_in_executor(self.executor, self._capacity, self.pool_bytes())
        counts = self.chunks.counts()
        logical = self.manifests.logical_bytes
        return PoolStatus(
            name=self.name,
            id=self.info.id,
            kind=self.info.kind,
            key_id=self.info.key_id,
            quota_bytes=self.info.quota_bytes,
            capacity_bytes=capacity.capacity,
            used_bytes=capacity.used,
            free_bytes=capacity.free,
            chunks=counts.chunks,
            stored_bytes=counts.stored_bytes,
            logical_bytes=logical,
            dedup_ratio=round(logical / counts.stored_bytes, 3) if counts.stored_bytes else None,
            manifests=self.manifests.count,
            encrypted=self.info.encrypted,
            checkpoints=self.checkpoints.count,
            checkpoint_bytes=self.checkpoints.stored_bytes,
            quarantined=tuple(self.manifests.quarantined.values()),
        )
