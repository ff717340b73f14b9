"""A pool directory used without a node behaves like the node: verified uploads, manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeback_blocks.chunk import CHUNK_SIZE, ChunkDecoder, ChunkEncoder, Compression, chunk_digest
from edgeback_blocks.ids import ChunkDigest, PoolId, PoolKey
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest import BackupType, ManifestBuilder, ManifestHeader
from edgeback_core.errors import ConflictError, DigestMismatchError, NotFoundError
from edgeback_pools.local import LocalPool
from edgeback_pools.pool_meta import create_pool

MKEY = ManifestKey(bytes(range(32)))


@pytest.fixture
def pool_dir(tmp_path: Path) -> Path:
    create_pool(tmp_path, "p1", "dedup")
    return tmp_path / "p1"


def chunk(pool: LocalPool, fill: bytes) -> tuple[ChunkDigest, bytes, bytes]:
    data = fill * (CHUNK_SIZE // len(fill))
    key = PoolKey(pool.pool.key)
    digest = chunk_digest(key, data)
    return digest, ChunkEncoder(Compression.FAST).encode(data, digest), data


async def test_chunks_round_trip_and_dedup(pool_dir: Path):
    async with LocalPool.open(pool_dir) as pool:
        digest, record, data = chunk(pool, b"edgeback ")
        assert await pool.missing([digest, digest]) == {digest}
        assert await pool.put_chunk(digest, record) is True
        assert await pool.put_chunk(digest, record) is False
        assert await pool.missing([digest]) == set()
        got = await pool.get_chunk(digest)
        assert ChunkDecoder().decode(got, key=pool.pool.key, expected=digest) == data
        assert (await pool.status()).chunks == 1


async def test_upload_under_a_wrong_digest_is_refused_and_stores_nothing(pool_dir: Path):
    async with LocalPool.open(pool_dir) as pool:
        digest, record, _ = chunk(pool, b"a")
        other, _, _ = chunk(pool, b"b")
        with pytest.raises(DigestMismatchError):
            await pool.put_chunk(other, record)
        assert await pool.missing([digest, other]) == {digest, other}
    leftovers = [p for p in (pool_dir / "chunks").rglob("*") if p.is_file()]
    assert leftovers == []


async def test_manifests_and_checkpoints(pool_dir: Path):
    async with LocalPool.open(pool_dir) as pool:
        digest, record, _ = chunk(pool, b"x")
        header = ManifestHeader(
            vm_id="vm1",
            disk_id="d1",
            image="rbd/vm1@s1",
            image_size=2 * CHUNK_SIZE,
            created_ms=1,
            backup_type=BackupType.FULL,
            pool_id=PoolId("p1"),
        )
        builder = ManifestBuilder(header)
        builder.set(0, digest)
        builder.set(1, None)
        manifest = builder.finish().encode(MKEY)
        with pytest.raises(ConflictError):  # references a chunk the pool lacks
            await pool.put_manifest("vm1", "d1", "v1", manifest)
        await pool.put_chunk(digest, record)
        await pool.put_checkpoint("vm1", "d1", "v1", b"partial")
        assert await pool.get_checkpoint("vm1", "d1", "v1") == b"partial"
        assert await pool.put_manifest("vm1", "d1", "v1", manifest) is True
        assert await pool.get_manifest("vm1", "d1", "v1") == manifest
        assert [m.version for m in await pool.list_manifests(vm="vm1")] == ["v1"]
        await pool.delete_checkpoint("vm1", "d1", "v1")
        assert await pool.get_checkpoint("vm1", "d1", "v1") is None


async def test_a_directory_that_is_not_a_pool_is_refused(tmp_path: Path):
    with pytest.raises(NotFoundError):
        async with LocalPool.open(tmp_path):
            pass
