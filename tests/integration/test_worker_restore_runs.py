"""Restores run by the worker fleet end to end: the catalog on the catalog DB and
RabbitMQ (in this process), the worker's run-queue consumer, the platform emulator on
real Ceph and a storage node process.

A 2-disk VM is backed up by a job run; its disks change; a restore created through the
catalog and started with its verification code is planned and run by the worker: to
the original path (snapshot before overwrite, VM started after) and to a new path (a
second VM, disks mapped). Each target disk ends byte-identical to the source snapshot,
the restore ``succeeded`` with per-disk figures, and an outside consumer sees the
restore's events in order. A corrupted chunk fails the restore naming the chunk, with
the target rolled back to its bytes from before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.backup_host import ADMIN
from tests.support.event_tap import tap_events
from tests.support.restore_runs import (
    read_digest,
    restore_and_wait,
    restore_events,
    restore_world,
    scribble,
    vm_images,
)
from tests.support.run_world import (
    HOST,
    POOL,
    RunWorld,
    add_platform,
    create_job,
    run_job,
)

from edgeback_blocks.rbd import RbdPool
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as r

pytestmark = pytest.mark.integration

MIB = 1 << 20


@pytest.fixture
async def world(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> AsyncIterator[RunWorld]:
    urls = (amqp_url, mongo_url, ceph_conf)
    env = {"EDGEBACK_WORKER_CHECKPOINT_INTERVAL_S": "0.5"}
    async with restore_world(tmp_path, urls, vms=2, worker_env=env) as world:
        yield world


def _in_order(kinds: list[str]) -> bool:
    """Started, then the VM (progress only inside it), then finished: each once."""
    vm = [k for k in kinds if k != "RestoreProgress"]
    inside = kinds[kinds.index("RestoreVmStarted") : kinds.index("RestoreVmFinished")]
    return (
        vm
        == [
            "RestoreStarted",
            "RestoreVmStarted",
            "RestoreVmFinished",
            "RestoreFinished",
        ]
        and kinds.count("RestoreProgress") == inside.count("RestoreProgress") > 0
    )


async def test_restore_runs_to_both_paths_and_a_corrupt_chunk_rolls_back(
    world: RunWorld, pool: RbdPool
) -> None:
    platform_id = await add_platform(world)
    source, target = world.emulator.state().vms[:2]
    await scribble(pool, vm_images(world, source), 0)  # data chunks in every disk
    job = await create_job(
        world, platform_id, name="src", pool=POOL, exclude_names=[target.name],
        options=j.JobOptions(vm_retries=0, keep_latest_snapshot=True),
    )  # fmt: skip
    full = await run_job(world, job, "full", "full")
    assert full.run.state == "succeeded", full
    set_id = full.backup_set_ids[0]
    found = await world.call(
        b.BACKUP_SET_GET, b.BackupSetGet(actor=ADMIN, backup_set_id=set_id), b.BackupSetWithDisks
    )
    snaps = {d.disk_id: d.snapshot_name for d in found.disks}
    images = dict(zip((d.id for d in source.disks), vm_images(world, source), strict=True))
    backed_up = {d: await read_digest(pool, images[d], snaps[d]) for d in images}
    await scribble(pool, list(images.values()), 5 * MIB)  # the VM changed since

    opts = r.RestoreOptions(
        host_id=HOST, snapshot_before_overwrite=True, start_vm_after=True, streams_per_disk=2
    )
    events = f"{world.topology.prefix}edgeback.events"
    async with tap_events(world.amqp_url, events, ["restore.event.#"]) as tap:
        done = await restore_and_wait(world, r.RestoreSpec(backup_set_ids=[set_id], options=opts))
        assert done.state == "succeeded", done
        assert _in_order(await restore_events(tap, done.id)), tap.messages
    # the catalog kept them too (the restore's own host sent them)
    page = r.RestoreEventsGet(actor=ADMIN, restore_id=done.id, limit=500)
    async with asyncio.timeout(10):
        while True:
            log = await world.call(r.RESTORE_EVENTS, page, r.RestoreEventsReply)
            kept = [type(e.event).__name__ for e in log.events]
            if "RestoreFinished" in kept:
                break
            await asyncio.sleep(0.2)
    assert kept[0] == "RestoreStarted" and kept[-1] == "RestoreFinished", kept
    assert {d: await read_digest(pool, images[d]) for d in images} == backed_up
    (vm,) = done.vms
    assert (vm.state, vm.vm_started, vm.rolled_back) == ("succeeded", True, [])
    assert sorted(s.disk_id for s in vm.stats) == sorted(images)
    # the disks still hold the backup's snapshot: only the chunk changed since was
    # rewritten (data, or zeros where the backup had none), the rest left as it was
    for s in vm.stats:
        assert 0 < s.bytes_written + s.bytes_zeroed <= 4 * MIB < s.bytes_left, vm.stats
        assert s.duration_s > 0, vm.stats
    assert next(v for v in world.emulator.state().vms if v.id == source.id).state == "running"

    # a new path: the second VM, disks crossed
    mapping = [
        r.DiskMap(source_disk_id=source.disks[0].id, target_disk_id=target.disks[1].id),
        r.DiskMap(source_disk_id=source.disks[1].id, target_disk_id=target.disks[0].id),
    ]
    new_path = r.RestoreTarget(
        new_path=r.NewPath(platform_id=platform_id, vm_id=target.id, disks=mapping)
    )
    spec = r.RestoreSpec(backup_set_ids=[set_id], target=new_path, options=opts)
    done = await restore_and_wait(world, spec)
    assert done.state == "succeeded", done
    crossed = vm_images(world, target)[::-1]
    assert [await read_digest(pool, name) for name in crossed] == [
        backed_up[d.id] for d in source.disks
    ]
    assert {(s.source_disk_id, s.disk_id) for s in done.vms[0].stats} == {
        (m.source_disk_id, m.target_disk_id) for m in mapping
    }

    # a corrupted chunk: failed naming it, the target back to its bytes from before
    await scribble(pool, crossed, 2 * MIB)
    before = [await read_digest(pool, name) for name in crossed]
    chunk = next(p for p in (world.node.data_dir / POOL).rglob("*") if len(p.name) == 64)
    original = chunk.read_bytes()
    chunk.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        failed = await restore_and_wait(world, spec)
    finally:
        chunk.write_bytes(original)
    assert failed.state == "failed", failed
    (vm,) = failed.vms
    assert vm.code in {"digest_mismatch", "chunk_header_invalid", "quarantined"}, vm
    assert chunk.name in vm.message and "rolled back" in vm.message, vm.message
    assert sorted(vm.rolled_back) == sorted(d.id for d in target.disks)
    assert [await read_digest(pool, name) for name in crossed] == before
