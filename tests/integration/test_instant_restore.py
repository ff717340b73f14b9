"""Instant restore's two foundations against the dev Ceph cluster and a node process.

A 64 MiB image of mixed data and zero chunks is backed up through the data path; the
node serves that disk version by capability URL; Ceph's import-only live migration
links a new image to it (``prepare``), which is readable at once and identical to the
snapshot; ``execute`` + ``commit`` copy the rest, and the image stays identical with
the node stopped. The time from ``prepare`` to the first 4 MiB read is printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.bench.images import DataMaker, image_sha256, mixed_layout, remove_image, write_chunk
from tests.integration.conftest import NewImage
from tests.support.images import create_capability
from tests.support.processes import node_process_async
from tests.support.storage_node import MANIFEST_KEY, TOKEN, make_pools

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.ids import PoolId
from edgeback_blocks.manifest import BackupType, ManifestHeader, created_ms
from edgeback_blocks.pipeline import backup_disk
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import MigrationState, RbdPool
from edgeback_core.errors import InvalidInputError

pytestmark = pytest.mark.integration

CHUNKS = 16
SIZE = CHUNKS * CHUNK_SIZE  # 64 MiB
VERSION = "20260101T000000Z-0123456789abcdef"


async def fill(pool: RbdPool, name: str) -> list[str]:
    data = DataMaker(seed=14)
    kinds = mixed_layout(CHUNKS, seed=14)
    async with pool.open_image(name, read_only=False) as image:
        for index, kind in enumerate(kinds):
            if kind != "zero":
                await write_chunk(image, index, data.random() if kind == "random" else data.text())
        await image.create_snap("s1")
    return kinds


async def back_up(pool: RbdPool, name: str, client: PoolClient, key: bytes) -> None:
    header = ManifestHeader(
        vm_id="vm-1", disk_id="disk-0", image=f"rbd/{name}@s1", image_size=SIZE,
        created_ms=created_ms(datetime.now(UTC)), backup_type=BackupType.FULL,
        pool_id=PoolId("dd"), version=VERSION,
    )  # fmt: skip
    async with pool.open_image(name, snapshot="s1") as image:
        result = await backup_disk(image, header=header, target=client, key=key)  # type: ignore[arg-type]
    await client.put_manifest("vm-1", "disk-0", VERSION, result.manifest.encode(MANIFEST_KEY))


async def test_prepare_read_execute_commit_then_node_stopped(
    pool: RbdPool, new_image: NewImage, tmp_path: Path
) -> None:
    make_pools(tmp_path)
    source = await new_image(SIZE)
    kinds = await fill(pool, source)
    assert {"zero", "text", "random"} <= set(kinds)
    async with pool.open_image(source, snapshot="s1") as image:
        want_sha = await image_sha256(image, SIZE)
        want_first = hashlib.sha256(await image.read(0, CHUNK_SIZE)).hexdigest()
    target = f"instant-{uuid.uuid4().hex[:12]}"
    progress: list[tuple[int, int]] = []
    try:
        async with node_process_async(tmp_path, threads=4) as node:
            async with PoolClient(node.url, TOKEN, "dd") as client:
                await back_up(pool, source, client, node.key("dd"))
            status, body = await create_capability(node.url, "dd", "vm-1", "disk-0", VERSION)
            assert status == 201, body
            spec = {"type": "raw", "stream": {"type": "http", "url": node.url + body["path"]}}
            started = time.monotonic()
            await pool.migration_prepare_import(spec, target)
            prepared = time.monotonic()
            async with pool.open_image(target) as image:
                first = hashlib.sha256(await image.read(0, CHUNK_SIZE)).hexdigest()
                first_read = time.monotonic()
                assert first == want_first
                assert await image_sha256(image, SIZE) == want_sha
            read_through = time.monotonic()
            assert (await pool.migration_status(target)).state is MigrationState.PREPARED
            await pool.migration_execute(target, on_progress=lambda d, t: progress.append((d, t)))
            assert (await pool.migration_status(target)).state is MigrationState.EXECUTED
            await pool.migration_commit(target)
            committed = time.monotonic()
            audit = [e for e in node.service.log_events() if e.get("event") == "image.read"]
        print(
            f"\ninstant restore 64 MiB: prepare {prepared - started:.3f} s, "
            f"first 4 MiB read {first_read - started:.3f} s after prepare started, "
            f"read-through {read_through - first_read:.3f} s, "
            f"execute+commit {committed - read_through:.3f} s, progress callbacks {len(progress)}"
        )
        assert first_read - started < 5.0
        assert audit and all(e["capability"] == body["capability"]["handle"] for e in audit)
        assert sum(int(str(e["bytes"])) for e in audit) >= SIZE
        with pytest.raises(InvalidInputError):  # no migration any more
            await pool.migration_status(target)
        async with pool.open_image(target) as image:  # the node is stopped
            assert await image_sha256(image, SIZE) == want_sha
    finally:
        await _clean_up(pool, target)


async def test_abort_removes_the_prepared_image(
    pool: RbdPool, new_image: NewImage, tmp_path: Path
) -> None:
    make_pools(tmp_path)
    source = await new_image(SIZE)
    await fill(pool, source)
    target = f"instant-{uuid.uuid4().hex[:12]}"
    try:
        async with node_process_async(tmp_path, threads=4) as node:
            async with PoolClient(node.url, TOKEN, "dd") as client:
                await back_up(pool, source, client, node.key("dd"))
            status, body = await create_capability(node.url, "dd", "vm-1", "disk-0", VERSION)
            assert status == 201, body
            spec = {"type": "raw", "stream": {"type": "http", "url": node.url + body["path"]}}
            await pool.migration_prepare_import(spec, target)
            await pool.migration_abort(target)
        assert not await pool.image_exists(target)
    finally:
        await _clean_up(pool, target)


async def test_rename_moves_an_image_aside_and_back(pool: RbdPool, new_image: NewImage) -> None:
    name = await new_image(CHUNK_SIZE)
    aside = f"{name}-aside"
    await pool.rename_image(name, aside)
    assert not await pool.image_exists(name) and await pool.image_exists(aside)
    await pool.rename_image(aside, name)
    assert await pool.image_exists(name)


async def _clean_up(pool: RbdPool, target: str) -> None:
    if not await pool.image_exists(target):
        return
    with contextlib.suppress(InvalidInputError):  # not migrating (any more)
        await pool.migration_abort(target)
    await remove_image(pool, target)
