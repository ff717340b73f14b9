"""GC and scrub against real backups: a Ceph image through the data path to a node.

- GC with zero grace while a backup runs, whose chunks are all old and unreferenced
  (their only manifest was deleted): the chunks it was told are present are pinned and
  survive, the commit succeeds and the restore is byte-identical. With pins that lapse
  at once, the same GC removes them and the node refuses the commit (loudly, never a
  manifest with holes): the protection is needed.
- Scrub finds a corrupted and a deleted chunk file; the next backup of the same disk
  uploads exactly those two again; the restore is byte-identical.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.bench.images import DataMaker, write_chunk
from tests.integration.conftest import NewImage
from tests.integration.test_pipeline_roundtrip import SIZE, backup, header, restored_matches
from tests.support.storage_node import ADMIN_TOKEN, MANIFEST_KEY, Node, make_pools, running_node

from edgeback_blocks.ids import ChunkDigest
from edgeback_blocks.manifest import BackupType
from edgeback_blocks.pipeline import BackupResult, backup_disk
from edgeback_blocks.pipeline.target import ChunkRecord
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.pool_wire import GcReport
from edgeback_blocks.rbd import RbdPool
from edgeback_core.errors import ConflictError

pytestmark = pytest.mark.integration

CHUNKS = 6
"""Chunks written; the rest of the image stays unallocated."""


@dataclass
class CollectingMidway:
    """A chunk target (the real pool client) that runs GC once, right after the node
    first answered which chunks it holds: in the window before the manifest commit."""

    client: PoolClient
    admin: PoolClient
    reports: list[GcReport] = field(default_factory=list)
    answered_present: int = 0
    started: bool = False

    async def missing(self, digests: Iterable[ChunkDigest]) -> set[ChunkDigest]:
        asked = list(digests)
        absent = await self.client.missing(asked)
        if not self.started:
            self.started = True  # the backup asks from several workers at once
            self.answered_present = len(set(asked) - absent)
            await asyncio.sleep(0.05)  # let short pins lapse (the second test's node)
            self.reports.append(await self.admin.collect_garbage(grace_s=0))
        return absent

    async def put_chunk(self, digest: ChunkDigest, record: ChunkRecord) -> bool:
        return await self.client.put_chunk(digest, record)


async def prepared(pool: RbdPool, new_image: NewImage) -> str:
    name = await new_image(SIZE)
    data = DataMaker(seed=23)
    async with pool.open_image(name, read_only=False) as image:
        for index in range(CHUNKS):
            await write_chunk(image, index, data.random() if index % 2 else data.text())
        await image.create_snap("s1")
    return name


async def commit(node: Node, result: BackupResult, version: str) -> None:
    async with node.client("dd") as client:
        await client.put_manifest("vm-1", "disk-0", version, result.manifest.encode(MANIFEST_KEY))


async def backup_with_gc_midway(
    pool: RbdPool, node: Node, name: str
) -> tuple[BackupResult, CollectingMidway]:
    full = await backup(pool, node, name, "s1")
    await commit(node, full, "v1")
    async with node.client("dd", token=ADMIN_TOKEN) as admin:
        await admin.delete_manifest("vm-1", "disk-0", "v1")  # every chunk is now garbage
    async with (
        pool.open_image(name, snapshot="s1") as image,
        node.client("dd") as client,
        node.client("dd", token=ADMIN_TOKEN) as admin,
    ):
        target = CollectingMidway(client=client, admin=admin)
        result = await backup_disk(
            image,
            header=header(name, "s1", BackupType.FULL, size=SIZE),
            target=target,
            key=node.key("dd"),
        )
    return result, target


async def test_gc_while_a_backup_runs_deletes_nothing_it_references(
    pool: RbdPool, new_image: NewImage, tmp_path: Path
) -> None:
    make_pools(tmp_path)
    name = await prepared(pool, new_image)
    async with running_node(tmp_path) as node:
        result, target = await backup_with_gc_midway(pool, node, name)
        (report,) = target.reports
        assert target.answered_present > 0
        assert report.kept_pinned >= target.answered_present
        await commit(node, result, "v2")
        assert await restored_matches(pool, node, new_image, result.manifest, name=name, snap="s1")
        assert result.stats.chunks_new == report.removed_chunks  # re-uploaded what went


async def test_without_pins_the_same_gc_removes_them_and_the_commit_is_refused(
    pool: RbdPool, new_image: NewImage, tmp_path: Path
) -> None:
    make_pools(tmp_path)
    name = await prepared(pool, new_image)
    async with running_node(tmp_path, pin_ttl_s=0.01) as node:
        result, target = await backup_with_gc_midway(pool, node, name)
        assert target.reports[0].removed_chunks >= target.answered_present > 0
        with pytest.raises(ConflictError):
            await commit(node, result, "v2")


async def test_scrub_finds_damage_and_the_next_backup_heals_it(
    pool: RbdPool, new_image: NewImage, tmp_path: Path
) -> None:
    make_pools(tmp_path)
    name = await prepared(pool, new_image)
    async with running_node(tmp_path) as node:
        first = await backup(pool, node, name, "s1")
        await commit(node, first, "v1")
        entries = [e for e in first.manifest.entries if e is not None]
        chunks = node.data_dir / "dd" / "chunks"
        corrupted, deleted = (chunks / d.hex()[:2] / d.hex() for d in entries[:2])
        data = bytearray(corrupted.read_bytes())
        data[len(data) // 2] ^= 0x01
        corrupted.write_bytes(data)
        deleted.unlink()
        async with node.client("dd", token=ADMIN_TOKEN) as admin:
            report = await admin.scrub()
        assert {b.digest for b in report.bad} == {entries[0].hex(), entries[1].hex()}
        second = await backup(pool, node, name, "s1")
        assert second.stats.chunks_new == 2
        await commit(node, second, "v2")
        for manifest in (first.manifest, second.manifest):
            assert await restored_matches(pool, node, new_image, manifest, name=name, snap="s1")
