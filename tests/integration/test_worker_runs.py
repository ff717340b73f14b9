"""A backup job run by the worker end to end: the catalog on the catalog DB, RabbitMQ,
the platform emulator on real Ceph and a storage node process.

A job of three VMs (one refused: no guest agent; two others excluded by name) runs a
full and then an incremental after the disks changed. Every disk version, restored
with the data path into a new image, is byte-identical to the RBD snapshot it was
taken from; the run ends partially succeeded, the incremental reads only what changed,
and "keep latest snapshot" leaves exactly the snapshots the next backups need.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from tests.integration.conftest import NewImage
from tests.integration.test_catalog_rpc import ADMIN
from tests.support.run_world import (
    POOL,
    RunWorld,
    T,
    add_platform,
    create_job,
    host_workers,
    run_ended,
    run_job,
    serve_world,
    start_run,
)
from tests.support.storage_node import TOKEN

from edgeback_blocks.keys import ClientKeys, read_secret_file
from edgeback_blocks.manifest import Manifest
from edgeback_blocks.pipeline import restore_disk
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import RbdPool
from edgeback_core.bus.topology import Topology
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import BackupType

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
World = RunWorld


@pytest.fixture
async def world(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> AsyncIterator[World]:
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    async with AsyncExitStack() as stack:
        world = await serve_world(
            stack, tmp_path, topology, amqp_url=amqp_url, mongo_url=mongo_url,
            ceph_conf=ceph_conf, vms=5, disk_mib="5,8",
        )  # fmt: skip
        # claims renewed each second: a cancel is seen fast
        await stack.enter_async_context(host_workers(world, 1, {"EDGEBACK_WORKER_CLAIM_S": "3"}))
        yield world


async def _job(world: World, options: j.JobOptions | None = None) -> j.JobInfo:
    platform_id = await add_platform(world)
    return await create_job(
        world, platform_id, name="nightly", pool=POOL,
        options=options or j.JobOptions(vm_retries=0, streams_per_disk=2, disks_per_vm=2),
        exclude_names=["db-*", "cache-*"],
    )  # fmt: skip


async def _run(world: World, job: j.JobInfo, key: str, kind: BackupType) -> b.RunDetail:
    return await run_job(world, job, key, kind)


async def _check_restores(
    world: World, detail: b.RunDetail, rbd: RbdPool, new_image: NewImage
) -> list[b.BackupSetWithDisks]:
    """Each disk version restores to the bytes of its RBD snapshot."""
    secret = read_secret_file(world.pool_dir / f"{POOL}.secret")
    keys = ClientKeys.plain(secret, world.node.key(POOL))
    sets = []
    async with PoolClient(world.node.url, TOKEN, POOL) as client:
        for set_id in detail.backup_set_ids:
            get = b.BackupSetGet(actor=ADMIN, backup_set_id=set_id)
            found = await world.call(b.BACKUP_SET_GET, get, b.BackupSetWithDisks)
            sets.append(found)
            assert found.backup_set is not None
            for dv in found.disks:
                data = await client.get_manifest(
                    found.backup_set.vm.vm_id, dv.disk_id, dv.manifest_version
                )
                manifest = Manifest.decode(data, keys.manifest)
                image, _, snap = manifest.header.image.partition("/")[2].partition("@")
                assert snap == dv.snapshot_name
                target = await new_image(dv.size_bytes)
                async with rbd.open_image(target, read_only=False) as out:
                    await restore_disk(manifest, out, source=client, key=keys.digest)
                async with (
                    rbd.open_image(image, snapshot=snap) as src,
                    rbd.open_image(target) as out,
                ):
                    assert await out.read(0, dv.size_bytes) == await src.read(0, dv.size_bytes), (
                        dv.disk_id
                    )
    return sets


async def _change_disks(world: World, rbd: RbdPool) -> None:
    state = world.emulator.state()
    for vm in state.vms:
        for disk in vm.disks:
            name = state.ceph.image_name(vm.id, disk)
            if name is None:
                continue
            async with rbd.open_image(name, read_only=False) as image:
                await image.write(MIB, os.urandom(64 * 1024))  # the first 4 MiB chunk only


async def test_full_then_incremental_restore_byte_identical(
    world: World, pool: RbdPool, new_image: NewImage
) -> None:
    job = await _job(world)
    full = await _run(world, job, "first", "full")
    assert full.run.state == "partially_succeeded", full
    states = {vm.vm.name: (vm.state, vm.code) for vm in full.vms}
    assert states == {
        "web-01": ("succeeded", ""),
        "mq-04": ("refused", "guest_agent_missing"),
        "app-05": ("succeeded", ""),
    }
    sets = await _check_restores(world, full, pool, new_image)
    sizes = [d.size_bytes for s in sets for d in s.disks]
    assert len(sizes) == 5 and any(size % (4 * MIB) for size in sizes), sizes

    await _change_disks(world, pool)
    incr = await _run(world, job, "second", "incremental")
    assert incr.run.state == "partially_succeeded"
    sets = await _check_restores(world, incr, pool, new_image)
    for found in sets:
        assert found.backup_set is not None
        assert found.backup_set.backup_type == "incremental"
        assert found.backup_set.base_backup_set_id in full.backup_set_ids
    # one changed 4 MiB chunk per disk is read again, the rest comes from the base
    assert incr.stats.bytes_read == 5 * 4 * MIB
    assert incr.stats.bytes_unchanged > 0
    await _check_snapshots_kept(world, full, incr)


async def _check_snapshots_kept(world: World, full: b.RunDetail, incr: b.RunDetail) -> None:
    """Keep latest snapshot: the VM keeps its newest (the incremental's) and its last
    full's snapshot; both are what the catalog recorded."""
    state = world.emulator.state()
    for vm in state.vms:
        if vm.name not in ("web-01", "app-05"):
            continue
        kept = [s for s in state.snapshots if s.vm_id == vm.id]
        assert len(kept) == 2, (vm.name, kept)


async def test_a_cancelled_run_stops_its_vms_and_releases_their_snapshots(world: World) -> None:
    """Stop: the workers see ``cancelling`` at their next renewal, cancel the backup,
    release the snapshot the run took, and the last VM ends the run ``cancelled``."""
    slow = [j.SpeedWindow(rate=256, unit="KiB/s")]  # each disk takes seconds to read
    options = j.JobOptions(vm_retries=2, backup_speed=slow, keep_latest_snapshot=True)
    job = await _job(world, options)
    run_id = await start_run(world, job, "cancel-me", "full")
    get = b.RunDetailGet(actor=ADMIN, run_id=run_id)
    async with asyncio.timeout(T):
        while True:  # a VM in its disks (the run's state is only visible in the catalog)
            detail = await world.call(b.RUN_DETAIL, get, b.RunDetail)
            if any(vm.state == "running" for vm in detail.vms):
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # into the disks
    cancel = b.RunCancel(actor=ADMIN, run_id=run_id, reason="operator stop")
    await world.call(b.RUN_CANCEL, cancel, m.RunTransitionReply)
    detail = await run_ended(world, run_id)
    assert detail.run.state == "cancelled", detail
    states = {vm.vm.name: (vm.state, vm.code) for vm in detail.vms}
    # one worker takes one VM at a time: the refused VM may come after the cancel
    assert states["mq-04"] in {("refused", "guest_agent_missing"), ("failed", "run_cancelled")}
    cancelled = {n for n, (_, code) in states.items() if code == "run_cancelled"} - {"mq-04"}
    assert cancelled, states
    assert all(states[name][0] == "failed" for name in cancelled)  # and never retried
    assert all(vm.attempt == 1 for vm in detail.vms), detail.vms
    state = world.emulator.state()
    backed = {vm.id for vm in state.vms if vm.name in cancelled}
    assert [s for s in state.snapshots if s.vm_id in backed] == []
