"""Backup and restore pipelines against the dev Ceph cluster and a storage node over HTTP.

Every restored image is compared (SHA-256) with the snapshot it was backed up from:
full, incremental and cumulative versions, with discarded whole objects, zeroed ranges,
an explicitly zero-filled chunk, unallocated chunks and a partial last chunk.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.bench.images import DataMaker, image_sha256, write_chunk
from tests.integration.conftest import NewImage
from tests.support.storage_node import Node, make_pools, running_node

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.ids import ManifestId, PoolId
from edgeback_blocks.manifest import BackupType, Manifest, ManifestHeader, created_ms
from edgeback_blocks.pipeline import (
    BackupOptions,
    BackupResult,
    DedupMode,
    DiffMismatchPolicy,
    RestoreOptions,
    backup_disk,
    restore_disk,
)
from edgeback_blocks.rbd import RbdPool
from edgeback_core.errors import DiffMismatchError

pytestmark = pytest.mark.integration

MiB = 1 << 20
SIZE = 10 * CHUNK_SIZE + 3 * MiB + 1536  # partial last chunk


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    make_pools(tmp_path)
    async with running_node(tmp_path) as running:
        yield running


def header(
    image: str, snap: str, kind: BackupType, parent: str | None = None, size: int = SIZE
) -> ManifestHeader:
    return ManifestHeader(
        vm_id="vm-1",
        disk_id="disk-0",
        image=f"rbd/{image}@{snap}",
        image_size=size,
        created_ms=created_ms(datetime.now(UTC)),
        backup_type=kind,
        pool_id=PoolId("dd"),
        parent=None if parent is None else ManifestId(parent),
    )


async def backup(
    pool: RbdPool,
    node: Node,
    name: str,
    snap: str,
    *,
    base: tuple[str, Manifest] | None = None,
    kind: BackupType = BackupType.FULL,
    options: BackupOptions | None = None,
) -> BackupResult:
    async with pool.open_image(name, snapshot=snap) as image, node.client("dd") as client:
        return await backup_disk(
            image,
            header=header(name, snap, kind, None if base is None else base[0]),
            target=client,
            key=node.key("dd"),
            base_snap=None if base is None else base[0],
            parent=None if base is None else base[1],
            options=options,
        )


async def restored_matches(
    pool: RbdPool, node: Node, new_image: NewImage, manifest: Manifest, *, name: str, snap: str
) -> bool:
    target = await new_image(manifest.header.image_size)
    async with pool.open_image(target, read_only=False) as image, node.client("dd") as client:
        # not declared empty: zero chunks are really written as zeroes
        await restore_disk(manifest, image, source=client, key=node.key("dd"))
        restored = await image_sha256(image, manifest.header.image_size)
    async with pool.open_image(name, snapshot=snap) as image:
        return restored == await image_sha256(image, manifest.header.image_size)


async def fill_first_version(pool: RbdPool, name: str, data: DataMaker) -> None:
    async with pool.open_image(name, read_only=False) as image:
        for index in (0, 1, 6, 7):
            await write_chunk(image, index, data.random())
        for index in (2, 8):
            await write_chunk(image, index, data.text())
        await write_chunk(image, 3, bytes(CHUNK_SIZE))  # allocated, but all zero
        # 4, 5 and 9 never written; the partial last chunk holds data
        await image.write(10 * CHUNK_SIZE, data.random(SIZE - 10 * CHUNK_SIZE))
        await image.create_snap("s1")


async def test_full_incremental_and_cumulative_restore_byte_identical(
    pool: RbdPool, node: Node, new_image: NewImage
) -> None:
    data = DataMaker(seed=11)
    name = await new_image(SIZE)
    await fill_first_version(pool, name, data)
    full = await backup(pool, node, name, "s1")
    assert full.manifest.entries[3] is None and full.manifest.entries[4] is None
    assert full.stats.bytes_sparse == 4 * CHUNK_SIZE  # chunks 3 (read), 4, 5, 9 (unallocated)
    assert await restored_matches(pool, node, new_image, full.manifest, name=name, snap="s1")

    async with pool.open_image(name, read_only=False) as image:
        await image.discard(0, CHUNK_SIZE)  # a whole object discarded
        await image.write_zeroes(6 * CHUNK_SIZE + MiB, 2 * MiB)  # zeroed range inside data
        await write_chunk(image, 4, data.text())  # new object
        await image.write(SIZE - 700, data.random(700))  # tail of the partial chunk
        await image.create_snap("s2")
    incr = await backup(pool, node, name, "s2", base=("s1", full.manifest),
                        kind=BackupType.INCREMENTAL)  # fmt: skip
    assert incr.manifest.entries[0] is None
    assert incr.manifest.entries[1] == full.manifest.entries[1]
    assert incr.stats.chunks_read < 6 and incr.stats.diff_sampled >= 1
    assert await restored_matches(pool, node, new_image, incr.manifest, name=name, snap="s2")

    async with pool.open_image(name, read_only=False) as image:
        await write_chunk(image, 5, data.random())
        await image.discard(7 * CHUNK_SIZE, CHUNK_SIZE)
        await image.create_snap("s3")
    cumulative = await backup(pool, node, name, "s3", base=("s1", full.manifest),
                              kind=BackupType.CUMULATIVE)  # fmt: skip
    assert cumulative.manifest.entries[0] is None and cumulative.manifest.entries[7] is None
    assert await restored_matches(pool, node, new_image, cumulative.manifest, name=name, snap="s3")


async def test_agent_and_server_side_dedup_give_identical_manifests(
    pool: RbdPool, node: Node, new_image: NewImage
) -> None:
    name = await new_image(SIZE)
    await fill_first_version(pool, name, DataMaker(seed=5))
    agent = await backup(pool, node, name, "s1")
    server = await backup(
        pool, node, name, "s1", options=BackupOptions(dedup=DedupMode.SERVER, streams=2)
    )
    assert server.manifest.entries == agent.manifest.entries
    assert agent.stats.chunks_new == 7 and agent.stats.bytes_uploaded > 0
    # server-side: everything sent again, the node stored nothing new
    assert server.stats.chunks_new == 0
    assert server.stats.bytes_uploaded == agent.stats.bytes_uploaded
    again = await backup(pool, node, name, "s1")
    assert again.stats.bytes_uploaded == 0 and again.stats.bytes_deduped > 0


async def test_a_diff_contradicted_by_the_sample_fails_or_reads_everything(
    pool: RbdPool, node: Node, new_image: NewImage
) -> None:
    name = await new_image(SIZE)
    await fill_first_version(pool, name, DataMaker(seed=3))
    full = await backup(pool, node, name, "s1")
    async with pool.open_image(name, read_only=False) as image:
        await image.create_snap("s2")  # nothing changed: every chunk is "unchanged"
    entries = list(full.manifest.entries)
    entries[1], entries[6] = entries[6], entries[1]  # what a lying diff would leave behind
    lying_parent = Manifest(header=full.manifest.header, entries=tuple(entries))
    sample_all = BackupOptions(diff_sample_fraction=1.0, diff_sample_cap=100)
    with pytest.raises(DiffMismatchError) as failed:
        await backup(pool, node, name, "s2", base=("s1", lying_parent),
                     kind=BackupType.INCREMENTAL, options=sample_all)  # fmt: skip
    assert failed.value.details["chunks"] == [1, 6]
    fallback = await backup(
        pool, node, name, "s2", base=("s1", lying_parent), kind=BackupType.INCREMENTAL,
        options=replace(sample_all, on_diff_mismatch=DiffMismatchPolicy.FULL_READ),
    )  # fmt: skip
    assert fallback.manifest.entries == full.manifest.entries
    assert fallback.stats.chunks_read == full.manifest.header.chunk_count


async def test_restore_into_a_new_image_skips_zero_chunks_and_grows_a_small_target(
    pool: RbdPool, node: Node, new_image: NewImage
) -> None:
    name = await new_image(SIZE)
    await fill_first_version(pool, name, DataMaker(seed=9))
    full = await backup(pool, node, name, "s1", options=BackupOptions(rng=random.Random(1)))
    target = await new_image(CHUNK_SIZE)  # smaller than the disk: grown
    async with pool.open_image(target, read_only=False) as image, node.client("dd") as client:
        stats = await restore_disk(
            full.manifest, image, source=client, key=node.key("dd"),
            options=RestoreOptions(target_is_zero=True),
        )  # fmt: skip
        assert await image.size() == SIZE
        restored = await image_sha256(image, SIZE)
    assert stats.bytes_zeroed == 0 and stats.chunks_fetched == 7
    async with pool.open_image(name, snapshot="s1") as image:
        assert restored == await image_sha256(image, SIZE)
