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
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from tests.support.backup_host import ADMIN
from tests.support.event_tap import EventTap, tap_events
from tests.support.run_world import (
    HOST,
    POOL,
    RunWorld,
    Seeding,
    add_platform,
    create_job,
    host_workers,
    run_job,
    serve_world,
)

from edgeback_blocks.rbd import RbdPool
from edgeback_core.bus.topology import Topology
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as r
from edgeback_platform.models import Vm

pytestmark = pytest.mark.integration

MIB = 1 << 20
ENDED = frozenset({"succeeded", "failed", "partially_succeeded", "cancelled", "expired"})


@pytest.fixture
async def world(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> AsyncIterator[RunWorld]:
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    async with AsyncExitStack() as stack:
        world = await serve_world(
            stack, tmp_path, topology, amqp_url=amqp_url, mongo_url=mongo_url,
            ceph_conf=ceph_conf, vms=2, disk_mib="12",
            seeding=Seeding(disks="2", eligible=True, fill=0.5),
        )  # fmt: skip
        await stack.enter_async_context(
            host_workers(world, 1, {"EDGEBACK_WORKER_CHECKPOINT_INTERVAL_S": "0.5"})
        )
        yield world


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _read(rbd: RbdPool, image: str, snapshot: str | None = None) -> str:
    async with rbd.open_image(image, snapshot=snapshot) as opened:
        return _digest(await opened.read(0, await opened.size()))


async def _scribble(rbd: RbdPool, images: list[str], offset: int) -> None:
    for name in images:
        async with rbd.open_image(name, read_only=False) as image:
            await image.write(offset, os.urandom(MIB))


def _images(world: RunWorld, vm: Vm) -> list[str]:
    ceph = world.emulator.state().ceph
    return [ceph.image_name(vm.id, disk) or "" for disk in vm.disks]


async def _restore(world: RunWorld, spec: r.RestoreSpec, within_s: float = 60) -> r.RestoreInfo:
    """Create the restore, start it with its code, and wait for its end."""
    created = await world.call(
        r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=spec), r.RestoreCreated
    )
    rid = created.restore.id
    start = r.RestoreStart(actor=ADMIN, restore_id=rid, verification_code=created.verification_code)
    await world.call(r.RESTORE_START, start, r.RestoreInfo)
    get = r.RestoreGet(actor=ADMIN, restore_id=rid)
    async with asyncio.timeout(within_s):
        while True:
            info = await world.call(r.RESTORE_GET, get, r.RestoreInfo)
            if info.state in ENDED:
                return info
            await asyncio.sleep(0.3)


async def _events_of(tap: EventTap, rid: str) -> list[str]:
    """The restore's event types in arrival order, once its RestoreFinished arrived."""
    await tap.wait_for(
        lambda m: m.type == "RestoreFinished" and m.body["restore_id"] == rid, within_s=30
    )
    return [m.body["type"] for m in tap.messages if m.body.get("restore_id") == rid]


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
    await _scribble(pool, _images(world, source), 0)  # data chunks in every disk
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
    images = dict(zip((d.id for d in source.disks), _images(world, source), strict=True))
    backed_up = {d: await _read(pool, images[d], snaps[d]) for d in images}
    await _scribble(pool, list(images.values()), 5 * MIB)  # the VM changed since

    opts = r.RestoreOptions(
        host_id=HOST, snapshot_before_overwrite=True, start_vm_after=True, streams_per_disk=2
    )
    events = f"{world.topology.prefix}edgeback.events"
    async with tap_events(world.amqp_url, events, ["restore.event.#"]) as tap:
        done = await _restore(world, r.RestoreSpec(backup_set_ids=[set_id], options=opts))
        assert done.state == "succeeded", done
        assert _in_order(await _events_of(tap, done.id)), tap.messages
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
    assert {d: await _read(pool, images[d]) for d in images} == backed_up
    (vm,) = done.vms
    assert (vm.state, vm.vm_started, vm.rolled_back) == ("succeeded", True, [])
    assert sorted(s.disk_id for s in vm.stats) == sorted(images)
    assert all(s.bytes_written >= MIB and s.duration_s > 0 for s in vm.stats), vm.stats
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
    done = await _restore(world, spec)
    assert done.state == "succeeded", done
    crossed = _images(world, target)[::-1]
    assert [await _read(pool, name) for name in crossed] == [backed_up[d.id] for d in source.disks]
    assert {(s.source_disk_id, s.disk_id) for s in done.vms[0].stats} == {
        (m.source_disk_id, m.target_disk_id) for m in mapping
    }

    # a corrupted chunk: failed naming it, the target back to its bytes from before
    await _scribble(pool, crossed, 2 * MIB)
    before = [await _read(pool, name) for name in crossed]
    chunk = next(p for p in (world.node.data_dir / POOL).rglob("*") if len(p.name) == 64)
    original = chunk.read_bytes()
    chunk.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        failed = await _restore(world, spec)
    finally:
        chunk.write_bytes(original)
    assert failed.state == "failed", failed
    (vm,) = failed.vms
    assert vm.code in {"digest_mismatch", "chunk_header_invalid", "quarantined"}, vm
    assert chunk.name in vm.message and "rolled back" in vm.message, vm.message
    assert sorted(vm.rolled_back) == sorted(d.id for d in target.disks)
    assert [await _read(pool, name) for name in crossed] == before
