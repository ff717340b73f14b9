"""Restore runs with the option ``instant`` (X8) through the catalog and the worker's
run queue: the platform emulator on real Ceph, a storage node process, the catalog on
the catalog DB and RabbitMQ.

A 2-disk VM is backed up by a job run and then changed; an instant restore of it to
the original path ends ``succeeded`` with the VM running on disks byte-identical to
the snapshot, progress events on the way, and no moved-aside image left. A corrupted
chunk: every migration aborted, the original images back unchanged, the restore
failed naming the chunk. A storage registered as opened by krbd: refused with its
stable code, nothing touched.
"""

from __future__ import annotations

import subprocess
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
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as rpc
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as r

pytestmark = pytest.mark.integration
MIB = 1 << 20


@pytest.fixture
async def world(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> AsyncIterator[RunWorld]:
    urls = (amqp_url, mongo_url, ceph_conf)
    env = {"EDGEBACK_WORKER_PROGRESS_INTERVAL_S": "0.2"}
    async with restore_world(tmp_path, urls, vms=1, worker_env=env) as world:
        yield world


async def test_instant_restore_runs_commits_rolls_back_and_refuses_krbd(
    world: RunWorld, pool: RbdPool, ceph_conf: str
) -> None:
    platform_id = await add_platform(world)
    (source,) = world.emulator.state().vms
    images = dict(zip((str(d.id) for d in source.disks), vm_images(world, source), strict=True))
    await scribble(pool, list(images.values()), 0)
    job = await create_job(
        world, platform_id, name="src", pool=POOL,
        options=j.JobOptions(vm_retries=0, keep_latest_snapshot=True),
    )  # fmt: skip
    full = await run_job(world, job, "full", "full")
    assert full.run.state == "succeeded", full
    set_id = full.backup_set_ids[0]
    found = await world.call(
        b.BACKUP_SET_GET, b.BackupSetGet(actor=ADMIN, backup_set_id=set_id), b.BackupSetWithDisks
    )
    snaps = {d.disk_id: d.snapshot_name for d in found.disks}
    backed_up = {d: await read_digest(pool, images[d], snaps[d]) for d in images}
    await scribble(pool, list(images.values()), 3 * MIB)  # the VM changed since
    opts = r.RestoreOptions(host_id=HOST, instant=True)
    spec = r.RestoreSpec(backup_set_ids=[set_id], options=opts)

    # a corrupted chunk first: aborted, the originals back unchanged, the chunk named
    before = {d: await read_digest(pool, images[d]) for d in images}
    chunk = next(p for p in (world.node.data_dir / POOL).rglob("*") if len(p.name) == 64)
    original = chunk.read_bytes()
    chunk.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        failed = await restore_and_wait(world, spec, within_s=120)
    finally:
        chunk.write_bytes(original)
    assert failed.state == "failed", failed
    (vm,) = failed.vms
    assert vm.code == "instant_restore_failed", vm
    assert chunk.name in vm.message and "original image back" in vm.message, vm.message
    assert sorted(vm.rolled_back) == sorted(images)
    assert {d: await read_digest(pool, images[d]) for d in images} == before
    assert _leftovers(ceph_conf, images) == []

    events = f"{world.topology.prefix}edgeback.events"
    async with tap_events(world.amqp_url, events, ["restore.event.#"]) as tap:
        done = await restore_and_wait(world, spec, within_s=120)
        assert done.state == "succeeded", done
        kinds = await restore_events(tap, done.id)
    assert kinds[0] == "RestoreStarted" and kinds[-1] == "RestoreFinished", kinds
    assert "RestoreProgress" in kinds, kinds
    (vm,) = done.vms
    assert (vm.state, vm.vm_started) == ("succeeded", True), vm
    assert {d: await read_digest(pool, images[d]) for d in images} == backed_up
    assert _leftovers(ceph_conf, images) == []
    assert next(v for v in world.emulator.state().vms if v.id == source.id).state == "running"

    # the hypervisors open images with krbd: refused before anything is touched
    await _storage_opened_by(world, platform_id, "krbd")
    before = {d: await read_digest(pool, images[d]) for d in images}
    refused = await restore_and_wait(world, spec)
    (vm,) = refused.vms
    assert (refused.state, vm.state) == ("failed", "refused"), refused
    assert r.REFUSE_INSTANT_KRBD in {x.code for x in vm.refusals}, vm
    assert {d: await read_digest(pool, images[d]) for d in images} == before


def _leftovers(ceph_conf: str, images: dict[str, str]) -> list[str]:
    """Moved-aside images of ``images`` still in the pool."""
    listed = subprocess.run(["rbd", "-c", ceph_conf, "ls", "rbd"], capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    return sorted(n for n in listed for i in images.values() if n.startswith(f"{i}-aside-"))


async def _storage_opened_by(world: RunWorld, platform_id: str, client: str) -> None:
    listed = await world.call(
        rpc.STORAGE_LIST, m.StorageList(actor=ADMIN, platform_id=platform_id), m.StorageListReply
    )
    (storage,) = listed.storages
    await world.call(
        rpc.STORAGE_REMOVE, m.StorageRemove(actor=ADMIN, storage_id=storage.id), m.Done
    )
    again = m.StorageAdd(
        actor=ADMIN, platform_id=platform_id, name=storage.name, host_id=storage.host_id,
        pool=storage.pool, conf_path=storage.conf_path, rbd_client="krbd",
    )  # fmt: skip
    await world.call(rpc.STORAGE_ADD, again, m.StorageInfo)
