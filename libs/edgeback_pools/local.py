"""A pool directory opened in this process: the storage node's API without the node.

:class:`LocalPool` offers the same coroutines as
:class:`~edgeback_blocks.pool_client.PoolClient`, so the backup, restore and verify
pipelines and the disk CLI work on a pool directory directly: disaster recovery on a
machine where no node runs, or a one-node site. Every upload is verified against the
pool key like the node does; file I/O runs on this object's own thread pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.pool_wire import ManifestItem, PoolStatus
from edgeback_core.errors import NotFoundError
from edgeback_pools.checkpoint_store import LOCAL_WRITER
from edgeback_pools.manifest_store import ManifestName
from edgeback_pools.names import SafeName, safe_name
from edgeback_pools.pool import Pool
from edgeback_pools.pool_meta import POOL_FILE

if TYPE_CHECKING:
    from edgeback_blocks.pipeline.target import ChunkRecord


class LocalPool:
    """One pool directory (the one holding ``pool.json``), used like a node client."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, directory: str | Path, *, threads: int = 4) -> AsyncIterator[LocalPool]:
        path = Path(directory)
        if not (path / POOL_FILE).is_file():
            raise NotFoundError(f"{path} is not a pool directory (no {POOL_FILE})", path=str(path))
        with ThreadPoolExecutor(threads, thread_name_prefix="local-pool") as executor:
            yield cls(await Pool.open(path, executor))

    async def missing(
        self, digests: Iterable[ChunkDigest], *, version: str | None = None
    ) -> set[ChunkDigest]:
        return set(self.pool.missing(list(dict.fromkeys(digests)), _version(version)))

    async def put_chunk(
        self, digest: ChunkDigest, record: ChunkRecord, *, version: str | None = None
    ) -> bool:
        return await self.pool.put_chunk(digest, _whole(record), _version(version))

    async def get_chunk(self, digest: ChunkDigest, *, version: str | None = None) -> bytes:
        return await self.pool.get_chunk(digest, _version(version))

    async def put_manifest(self, vm: str, disk: str, version: str, data: bytes) -> bool:
        return await self.pool.put_manifest(_name(vm, disk, version), data)

    async def get_manifest(self, vm: str, disk: str, version: str) -> bytes:
        return await self.pool.manifests.get(_name(vm, disk, version))

    async def list_manifests(
        self, *, vm: str | None = None, disk: str | None = None
    ) -> list[ManifestItem]:
        entries = await self.pool.manifests.list(
            None if vm is None else safe_name(vm, what="vm"),
            None if disk is None else safe_name(disk, what="disk"),
        )
        return [entry.as_item() for entry in entries]

    async def put_checkpoint(self, vm: str, disk: str, version: str, data: bytes) -> None:
        await self.pool.put_checkpoint(_name(vm, disk, version), data, LOCAL_WRITER)

    async def get_checkpoint(self, vm: str, disk: str, version: str) -> bytes | None:
        try:
            return await self.pool.checkpoints.get(_name(vm, disk, version))
        except NotFoundError:
            return None

    async def delete_checkpoint(self, vm: str, disk: str, version: str) -> None:
        await self.pool.checkpoints.delete(_name(vm, disk, version), LOCAL_WRITER)

    async def status(self) -> PoolStatus:
        return await self.pool.status()


def _name(vm: str, disk: str, version: str) -> ManifestName:
    return ManifestName(
        vm=safe_name(vm, what="vm"),
        disk=safe_name(disk, what="disk"),
        version=safe_name(version, what="version"),
    )


def _whole(record: ChunkRecord) -> bytes | memoryview:
    """The record as one buffer: parts are joined (in process there is no socket to
    stream them to, and the verification wants one buffer)."""
    if isinstance(record, bytes | memoryview):
        return record
    if isinstance(record, bytearray):
        return memoryview(record)
    return b"".join(record)


def _version(version: str | None) -> SafeName | None:
    return None if version is None else safe_name(version, what="version")
