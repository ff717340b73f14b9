"""Pipelines under failure, on the dev Ceph cluster and a storage node over HTTP.

A corrupted chunk file makes restore and verify fail naming the chunk, and the restore
never writes the bad data; a cancelled backup leaves a checkpoint from which a second
run reads and uploads only what is left.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.bench.images import DataMaker, write_chunk
from tests.support.storage_node import Node, make_pools, running_node

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.ids import ChunkDigest, PoolId
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest import BackupType, ManifestBuilder, ManifestHeader, created_ms
from edgeback_blocks.pipeline import (
    BackupOptions,
    BackupResult,
    Progress,
    backup_disk,
    restore_disk,
    verify_disk,
)
from edgeback_blocks.rbd import RbdPool
from edgeback_core.errors import IntegrityError

MKEY = ManifestKey(bytes(range(32)))

pytestmark = pytest.mark.integration

CHUNKS = 16
SIZE = CHUNKS * CHUNK_SIZE


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    make_pools(tmp_path)
    async with running_node(tmp_path) as running:
        yield running


@pytest.fixture
async def images(pool: RbdPool) -> AsyncIterator[tuple[str, str]]:
    """A source image of random chunks with snapshot ``s1``, and an empty target."""
    source, target = (f"test-pipe-{uuid.uuid4().hex[:12]}" for _ in range(2))
    await pool.create_image(source, SIZE)
    await pool.create_image(target, SIZE)
    data = DataMaker(seed=21)
    async with pool.open_image(source, read_only=False) as image:
        for index in range(CHUNKS):
            await write_chunk(image, index, data.random())
        await image.create_snap("s1")
    yield source, target
    async with pool.open_image(source, read_only=False) as image:
        await image.remove_snap("s1")
    for name in (source, target):
        await pool.remove_image(name)


def header(source: str) -> ManifestHeader:
    return ManifestHeader(
        vm_id="vm-1", disk_id="disk-0", image=f"rbd/{source}@s1", image_size=SIZE,
        created_ms=created_ms(datetime.now(UTC)), backup_type=BackupType.FULL,
        pool_id=PoolId("dd"),
    )  # fmt: skip


async def backup(
    pool: RbdPool,
    node: Node,
    source: str,
    options: BackupOptions | None = None,
    resume_from: bytes | None = None,
) -> BackupResult:
    async with pool.open_image(source, snapshot="s1") as image, node.client("dd") as client:
        return await backup_disk(
            image, header=header(source), target=client, key=node.key("dd"), options=options,
            resume_from=resume_from,
        )  # fmt: skip


def chunk_file(node: Node, digest: ChunkDigest) -> Path:
    return node.data_dir / "dd" / "chunks" / digest.hex()[:2] / digest.hex()


async def test_corrupt_chunk_fails_restore_and_verify_and_is_never_written(
    pool: RbdPool, node: Node, images: tuple[str, str]
) -> None:
    source, target = images
    manifest = (await backup(pool, node, source)).manifest
    bad = manifest.entries[5]
    assert bad is not None
    path = chunk_file(node, bad)
    record = bytearray(path.read_bytes())
    record[len(record) // 2] ^= 0x5A
    path.write_bytes(bytes(record))
    async with node.client("dd") as client:
        report = await verify_disk(manifest, source=client, key=node.key("dd"))
        assert [(b.digest, b.indices, b.code) for b in report.bad] == [
            (bad.hex(), (5,), "digest_mismatch")
        ]
        assert report.checked == CHUNKS
        async with pool.open_image(target, read_only=False) as image:
            with pytest.raises(IntegrityError) as failed:
                await restore_disk(manifest, image, source=client, key=node.key("dd"))
            assert bad.hex() in failed.value.message and failed.value.details["index"] == 5
            # the chunk's range of the new image still reads as zeroes: nothing wrong written
            assert await image.read(5 * CHUNK_SIZE, CHUNK_SIZE) == bytes(CHUNK_SIZE)


async def test_missing_chunk_is_reported_by_verify(
    pool: RbdPool, node: Node, images: tuple[str, str]
) -> None:
    manifest = (await backup(pool, node, images[0])).manifest
    gone = manifest.entries[2]
    assert gone is not None
    chunk_file(node, gone).unlink()
    async with running_node(node.data_dir) as fresh, fresh.client("dd") as client:
        report = await verify_disk(manifest, source=client, key=fresh.key("dd"))
    assert [(b.indices, b.code) for b in report.bad] == [((2,), "not_found")]


async def test_cancelled_backup_resumes_from_its_checkpoint(
    pool: RbdPool, node: Node, images: tuple[str, str]
) -> None:
    source, _ = images
    task: asyncio.Task[BackupResult] | None = None

    def cancel_after_six(progress: Progress) -> None:
        if progress.done_bytes >= 6 * CHUNK_SIZE and task is not None:
            task.cancel()

    async with node.client("dd") as client:

        async def store(data: bytes) -> None:
            await client.put_checkpoint("vm-1", "disk-0", "v1", data)

        options = BackupOptions(
            streams=2, depth=1, progress=cancel_after_six, progress_interval_s=0,
            checkpoint=store, checkpoint_interval_s=60, manifest_key=MKEY,
        )  # fmt: skip
        task = asyncio.create_task(backup(pool, node, source, options))
        with pytest.raises(asyncio.CancelledError):
            await task
        checkpoint = await client.get_checkpoint("vm-1", "disk-0", "v1")
    assert checkpoint is not None
    done = ManifestBuilder.resume(checkpoint, MKEY).done_count
    assert 6 <= done < CHUNKS
    resumed = await backup(
        pool, node, source, BackupOptions(manifest_key=MKEY), resume_from=checkpoint
    )
    assert resumed.stats.chunks_skipped == done
    assert resumed.stats.chunks_read == CHUNKS - done
    assert resumed.stats.bytes_uploaded <= (CHUNKS - done) * (CHUNK_SIZE + 48)
    uninterrupted = await backup(pool, node, source)
    assert resumed.manifest.entries == uninterrupted.manifest.entries
    assert uninterrupted.stats.chunks_new == 0
