"""A disk version read as a raw image: chunks assembled from its manifest, verified first.

:class:`DiskImage` is the chunk map of one committed manifest over the pool that holds
its chunks; :class:`ChunkReader` hands out the plaintext of chunk ``i``: zeros for a
zero entry (nothing read), else the record read from the pool and decoded with the
pool key in the thread pool, which checks its header, lengths and keyed digest
(``formats.md``) before a byte of it is returned. Verified chunks go into a
:class:`~edgeback_pools.chunk_cache.ChunkCache`; concurrent requests for the same
chunk share one read. Plain pools only: the node holds no key of an encrypted pool.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from edgeback_blocks import manifest_codec as codec
from edgeback_blocks.chunk import ZERO_CHUNK, ChunkDecoder
from edgeback_blocks.extents import chunk_span
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.errors import (
    ManifestFormatError,
    PoolEncryptedError,
    ShortReadError,
)
from edgeback_pools.chunk_cache import ChunkCache
from edgeback_pools.manifest_store import ManifestName
from edgeback_pools.pool import Pool

Buffer = bytes | memoryview

_ZEROS = memoryview(ZERO_CHUNK)
_local = threading.local()


def refuse_encrypted(pool: Pool) -> None:
    """:class:`PoolEncryptedError` for an encrypted pool (the node cannot decrypt it)."""
    if pool.info.encrypted:
        raise PoolEncryptedError(
            "the storage node holds no key of an encrypted pool, so it cannot serve its "
            "disk versions as raw images; use a normal restore",
            pool=pool.name,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskImage:
    """One committed disk version over the pool holding its chunks."""

    pool: Pool
    name: ManifestName
    entries: tuple[ChunkDigest | None, ...]
    image_size: int
    chunk_size: int
    checksum: bytes
    """The manifest's trailing unkeyed checksum: which exact manifest this is."""

    @classmethod
    def of(cls, pool: Pool, name: ManifestName, data: bytes, mac_key: bytes | None) -> DiskImage:
        """The image ``data`` (the manifest stored under ``name``) describes.

        With ``mac_key`` the manifest's MAC is checked and so is its header's VM, disk and
        version against ``name``; without, its structure and checksum only.
        """
        refuse_encrypted(pool)
        if mac_key is None:
            parsed = codec.layout(data)
        else:
            key = ManifestKey(mac_key)
            parsed = codec.authenticate(data, key, allow_unauthenticated=False)
            header = codec.header_of(parsed, key)
            # an empty version is a manifest written without its name (as the CLI reads it)
            named = (header.vm_id, header.disk_id, header.version or name.version)
            if named != (name.vm, name.disk, name.version):
                raise ManifestFormatError(
                    "the manifest describes another disk version than its name says",
                    vm=header.vm_id, disk=header.disk_id, version=header.version,
                )  # fmt: skip
        if parsed.partial:
            raise ManifestFormatError("this is a partial manifest (a checkpoint), not a manifest")
        return cls(
            pool=pool,
            name=name,
            entries=tuple(codec.entries_of(parsed)),
            image_size=parsed.image_size,
            chunk_size=parsed.chunk_size,
            checksum=bytes(data[-codec.CHECKSUM_SIZE :]),
        )

    def span(self, index: int) -> tuple[int, int]:
        return chunk_span(index, self.image_size, self.chunk_size)


class ChunkReader:
    """Verified plaintext of image chunks, through a shared cache."""

    def __init__(self, cache: ChunkCache) -> None:
        self.cache = cache
        self._loading: dict[ChunkDigest, asyncio.Future[bytes]] = {}

    async def chunk(self, image: DiskImage, index: int) -> Buffer:
        """Chunk ``index`` of ``image``; an ``IntegrityError`` naming it if it is bad."""
        digest = image.entries[index]
        _, length = image.span(index)
        if digest is None:
            return _ZEROS[:length]
        data = self.cache.get(digest)
        if data is None:
            data = await self._load(image, digest)
        if len(data) != length:
            raise ShortReadError(
                "the chunk's length is not what the manifest says",
                chunk=digest.hex(), index=index, expected=length, got=len(data),
            )  # fmt: skip
        return data

    async def _load(self, image: DiskImage, digest: ChunkDigest) -> bytes:
        pending = self._loading.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            data = await self._read(image, digest)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters (if any) get it, no warning otherwise
            raise
        finally:
            del self._loading[digest]
        future.set_result(data)
        self.cache.put(digest, data)
        return data

    async def _read(self, image: DiskImage, digest: ChunkDigest) -> bytes:
        version = image.name.version if image.pool.info.kind is PoolKind.STANDARD else None
        record = await image.pool.chunks.get(digest, version)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            image.pool.executor, _decode, record, image.pool.key, digest
        )


def _decode(record: bytes, key: PoolKey, digest: ChunkDigest) -> bytes:
    """*Blocking*: the record's data, checked (one decoder per thread)."""
    decoder: ChunkDecoder | None = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = ChunkDecoder()
    return decoder.decode(record, key=key, expected=digest)
