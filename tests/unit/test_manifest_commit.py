"""Committing a manifest twice: a redelivered task adopts what its first run stored,
a different source under the same name stays a conflict (real pool directory)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgeback_blocks.chunk import CHUNK_SIZE, ChunkEncoder, Compression, chunk_digest
from edgeback_blocks.commit import commit_manifest, committed
from edgeback_blocks.ids import PoolId, PoolKey
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest import BackupType, Manifest, ManifestBuilder, ManifestHeader
from edgeback_core.errors import ConflictError
from edgeback_pools.local import LocalPool
from edgeback_pools.pool_meta import create_pool

MKEY = ManifestKey(bytes(range(32)))
HEADER = ManifestHeader(
    vm_id="vm1",
    disk_id="d1",
    image="rbd/vm1@edgeback-r1",
    image_size=2 * CHUNK_SIZE,
    created_ms=1_000,
    backup_type=BackupType.FULL,
    pool_id=PoolId("p1"),
)


@pytest.fixture
def pool_dir(tmp_path: Path) -> Path:
    create_pool(tmp_path, "p1", "dedup")
    return tmp_path / "p1"


async def manifest(pool: LocalPool, header: ManifestHeader) -> Manifest:
    data = b"adopt me " * (CHUNK_SIZE // 9)
    digest = chunk_digest(PoolKey(pool.pool.key), data)
    await pool.put_chunk(digest, ChunkEncoder(Compression.FAST).encode(data, digest))
    builder = ManifestBuilder(header)
    builder.set(0, digest)
    builder.set(1, None)
    return builder.finish()


async def test_a_second_commit_of_the_same_source_adopts_the_first(pool_dir: Path) -> None:
    async with LocalPool.open(pool_dir) as pool:
        first = await manifest(pool, HEADER)
        assert await committed(pool, "v1", HEADER, MKEY) is None
        done = await commit_manifest(pool, "v1", first, MKEY)
        assert not done.adopted and done.manifest == first
        # the redelivered task's own run: same snapshot, a later creation time
        again = await manifest(pool, dataclasses.replace(HEADER, created_ms=2_000))
        assert again.encode(MKEY) != first.encode(MKEY)
        adopted = await commit_manifest(pool, "v1", again, MKEY)
        assert adopted.adopted and adopted.manifest == first
        assert await committed(pool, "v1", again.header, MKEY) == first
        assert Manifest.decode(await pool.get_manifest("vm1", "d1", "v1"), MKEY) == first


async def test_another_source_under_the_same_name_is_a_conflict(pool_dir: Path) -> None:
    async with LocalPool.open(pool_dir) as pool:
        await commit_manifest(pool, "v1", await manifest(pool, HEADER), MKEY)
        other = dataclasses.replace(HEADER, image="rbd/vm1@edgeback-r2", created_ms=3_000)
        with pytest.raises(ConflictError, match="edgeback-r1"):
            await commit_manifest(pool, "v1", await manifest(pool, other), MKEY)
        with pytest.raises(ConflictError):
            await committed(pool, "v1", other, MKEY)
