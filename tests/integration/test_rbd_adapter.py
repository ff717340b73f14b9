"""The RBD adapter against the real dev Ceph cluster: extents, snapshots, reads, errors."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from tests.integration.conftest import NewImage

from edgeback_blocks.extents import Extent
from edgeback_blocks.rbd import RbdCluster, RbdImage, RbdPool
from edgeback_core.errors import (
    CephConfUnreadableError,
    ConflictError,
    DeadlineExceededError,
    InvalidInputError,
    NotFoundError,
    RbdImageExistsError,
    RbdImageNotFoundError,
    RbdPoolNotFoundError,
    RbdSnapshotExistsError,
    RbdSnapshotNotFoundError,
    ShortReadError,
)

pytestmark = pytest.mark.integration

MiB = 1 << 20
OBJ = 4 * MiB


async def _snap(pool: RbdPool, name: str, snap: str) -> None:
    async with pool.open_image(name, read_only=False) as image:
        await image.create_snap(snap)


async def _diff(pool: RbdPool, name: str, at: str, since: str | None) -> list[Extent]:
    async with pool.open_image(name, snapshot=at) as image:
        return await image.diff_extents(since)


async def test_diff_is_exact_for_an_object_that_existed_at_the_base(
    pool: RbdPool, new_image: NewImage
) -> None:
    name = await new_image(16 * MiB)
    async with pool.open_image(name, read_only=False) as image:
        await image.write(0, os.urandom(OBJ))
        await image.create_snap("s1")
        await image.write(8192, b"\x01" * 4096)
        await image.write(OBJ + 65536, b"\x02" * 4096)  # a new object: start to end of data
        await image.create_snap("s2")
    assert await _diff(pool, name, "s2", "s1") == [
        Extent(8192, 4096, True),
        Extent(OBJ, 65536 + 4096, True),
    ]
    async with pool.open_image(name, snapshot="s2") as image:
        whole = await image.diff_extents("s1", whole_object=True)
    assert whole == [Extent(0, OBJ, True), Extent(OBJ, OBJ, True)]


async def test_diff_from_none_lists_allocated_extents_only(
    pool: RbdPool, new_image: NewImage
) -> None:
    name = await new_image(16 * MiB)
    async with pool.open_image(name, read_only=False) as image:
        await image.write(2 * OBJ + MiB, os.urandom(64 * 1024))
        await image.create_snap("full")
    extents = await _diff(pool, name, "full", None)
    # Only object 2 is allocated; librbd reports it from its start to its end of data.
    assert extents == [Extent(2 * OBJ, MiB + 64 * 1024, True)]


async def test_discarding_a_whole_object_shows_as_not_existing(
    pool: RbdPool, new_image: NewImage
) -> None:
    name = await new_image(12 * MiB)
    async with pool.open_image(name, read_only=False) as image:
        await image.write(0, os.urandom(3 * OBJ))
        await image.create_snap("s1")
        await image.discard(OBJ, OBJ)
        await image.write_zeroes(2 * OBJ, OBJ)
        await image.create_snap("s2")
    extents = await _diff(pool, name, "s2", "s1")
    assert Extent(OBJ, OBJ, False) in extents
    assert all(not e.exists for e in extents)
    assert {e.offset for e in extents} <= {OBJ, 2 * OBJ}
    async with pool.open_image(name, snapshot="s2") as image:
        assert await image.read(OBJ, 2 * OBJ) == bytes(2 * OBJ)


async def test_a_snapshot_reads_back_what_was_written_before_it(
    pool: RbdPool, new_image: NewImage
) -> None:
    name = await new_image(8 * MiB)
    before, after = os.urandom(OBJ + 4096), os.urandom(OBJ + 4096)
    async with pool.open_image(name, read_only=False) as image:
        await image.write(MiB, before)
        await image.flush()
        await image.create_snap("s1")
        await image.write(MiB, after)
        assert await image.snap_exists("s1")
        assert not await image.snap_exists("nope")
        assert [s.name for s in await image.list_snaps()] == ["s1"]
        assert await image.read(MiB, len(after)) == after
    async with pool.open_image(name, snapshot="s1") as snap:
        assert await snap.read(MiB, len(before)) == before
        assert await snap.read(0, MiB) == bytes(MiB)


async def test_a_partial_last_chunk_reads_exactly_and_a_long_read_is_short(
    pool: RbdPool, new_image: NewImage
) -> None:
    size = 2 * OBJ + 12345
    name = await new_image(size)
    tail = os.urandom(size - 2 * OBJ)
    async with pool.open_image(name, read_only=False) as image:
        assert await image.size() == size
        await image.write(2 * OBJ, tail)
        assert await image.read(2 * OBJ, len(tail)) == tail
        with pytest.raises(ShortReadError) as info:
            await image.read(2 * OBJ, OBJ)
        assert info.value.details["got"] == len(tail)
        assert await image.diff_extents(None) == [Extent(2 * OBJ, len(tail), True)]
        await image.resize(3 * OBJ)
        assert await image.size() == 3 * OBJ


async def test_driver_errors_are_translated(pool: RbdPool, new_image: NewImage) -> None:
    missing = f"test-rbd-missing-{uuid.uuid4().hex}"
    with pytest.raises(RbdImageNotFoundError) as info:
        async with pool.open_image(missing):
            pass
    assert isinstance(info.value, NotFoundError)
    assert info.value.code == "rbd_image_not_found"
    assert not info.value.retryable
    assert not await pool.image_exists(missing)

    name = await new_image(OBJ)
    assert await pool.image_exists(name)
    with pytest.raises(RbdImageExistsError) as exists:
        await pool.create_image(name, OBJ)
    assert isinstance(exists.value, ConflictError)
    with pytest.raises(RbdSnapshotNotFoundError):
        async with pool.open_image(name, snapshot="nope"):
            pass
    await _snap(pool, name, "s1")
    with pytest.raises(RbdSnapshotExistsError):
        await _snap(pool, name, "s1")
    with pytest.raises(ConflictError):  # an image with snapshots cannot be removed
        await pool.remove_image(name)
    async with pool.open_image(name, snapshot="s1") as snap:
        with pytest.raises(InvalidInputError):
            await snap.write(0, b"x" * 512)


async def test_a_missing_pool_is_not_found(ceph_conf: str) -> None:
    async with RbdCluster.connect(ceph_conf, timeout=10) as cluster:
        assert not await cluster.pool_exists("no-such-pool-edgeback")
        with pytest.raises(RbdPoolNotFoundError):
            async with cluster.open_pool("no-such-pool-edgeback"):
                pass


async def test_stats_report_the_cluster_and_the_pool(ceph_conf: str, ceph_pool: str) -> None:
    async with RbdCluster.connect(ceph_conf, timeout=10) as cluster:
        assert await cluster.pool_exists(ceph_pool)
        stats = await cluster.cluster_stats()
        assert 0 < stats.used_bytes < stats.total_bytes
        assert stats.avail_bytes > 0
        async with cluster.open_pool(ceph_pool) as opened:
            pool_stats = await opened.stats()
            assert pool_stats.objects >= 1  # rbd_directory at least, once an image existed


async def test_pool_space_is_what_ceph_df_reports(ceph_conf: str, ceph_pool: str) -> None:
    async with RbdCluster.connect(ceph_conf, timeout=10) as cluster:
        space = await cluster.pool_space(ceph_pool)
        stats = await cluster.cluster_stats()
        assert 0 < space.free_bytes <= stats.avail_bytes
        assert space.free_bytes <= space.total_bytes
        with pytest.raises(RbdPoolNotFoundError):
            await cluster.pool_space("no-such-pool-edgeback")


async def test_versions_name_what_each_daemon_type_runs(ceph_conf: str) -> None:
    async with RbdCluster.connect(ceph_conf, timeout=10) as cluster:
        versions = await cluster.versions()
    daemons = {v.daemon for v in versions}
    assert {"mon", "osd"} <= daemons and "overall" not in daemons
    assert all(v.major >= 16 and v.text.startswith("ceph version") for v in versions)


@pytest.fixture
def dead_mon_conf(ceph_conf: str, tmp_path: Path) -> str:
    """The dev cluster's conf with its monitor moved to a port nobody listens on."""
    text = Path(ceph_conf).read_text()
    conf = tmp_path / "ceph.conf"
    conf.write_text(re.sub(r"(?m)^(\s*mon_host\s*=).*$", r"\1 v1:127.0.0.1:9", text))
    return str(conf)


async def test_a_ceph_conf_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """Not ``rbd_image_not_found`` (librados' ObjectNotFound from conf_read_file)."""
    for conf in (tmp_path / "none.conf", tmp_path):
        with pytest.raises(CephConfUnreadableError) as info:
            async with RbdCluster.connect(str(conf), timeout=2):
                pass
        assert info.value.details["conffile"] == str(conf) and not info.value.retryable


async def test_an_unreachable_monitor_times_out(dead_mon_conf: str) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as info:
        async with RbdCluster.connect(dead_mon_conf, timeout=2):
            pass
    assert info.value.retryable
    assert time.monotonic() - started < 15


async def test_many_parallel_reads_return_the_right_bytes(
    pool: RbdPool, new_image: NewImage
) -> None:
    chunks = [os.urandom(OBJ) for _ in range(12)]
    name = await new_image(len(chunks) * OBJ)
    async with pool.open_image(name, read_only=False) as image:
        await asyncio.gather(*(image.write(i * OBJ, c) for i, c in enumerate(chunks)))
        await image.flush()
    async with pool.open_image(name) as image:
        order = [i % len(chunks) for i in range(3 * len(chunks))]
        got = await asyncio.gather(*(_read_chunk(image, i) for i in order))
    assert got == [chunks[i] for i in order]


async def _read_chunk(image: RbdImage, index: int) -> bytes:
    return await image.read(index * OBJ, OBJ)


async def test_a_cancelled_read_does_not_break_closing(pool: RbdPool, new_image: NewImage) -> None:
    name = await new_image(8 * OBJ)
    async with pool.open_image(name) as image:
        tasks = [asyncio.create_task(image.read(i * OBJ, OBJ)) for i in range(8)]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    async with pool.open_image(name) as image:
        assert await image.read(0, 4096) == bytes(4096)


async def test_a_rollback_waits_for_writes_whose_awaits_were_cancelled(
    pool: RbdPool, new_image: NewImage
) -> None:
    """A failed restore cancels its workers while their writes still run in threads; the
    rollback that follows must not be overtaken by one of them."""
    span = 4 * OBJ  # long writes: several are still running when the rollback is asked for
    name = await new_image(8 * span)
    async with pool.open_image(name, read_only=False) as image:
        await image.create_snap("before")
        for _ in range(4):
            tasks = [
                asyncio.create_task(image.write(i * span, bytes([i + 1]) * span)) for i in range(8)
            ]
            await asyncio.sleep(0)  # every write is submitted; the first ones are running
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await image.rollback_to_snap("before")
            for i in range(8):
                for offset in range(i * span, (i + 1) * span, OBJ):
                    assert await image.read(offset, 4096) == bytes(4096), f"{offset} written late"
