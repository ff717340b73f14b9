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
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from tests.integration.conftest import TEST_IDENTITIES, NewImage
from tests.integration.test_catalog_rpc import ADMIN
from tests.support.backup_host import platform_of_host, write_pool_files
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import NodeProcess, node_process_async
from tests.support.storage_node import TOKEN

from edgeback_blocks.keys import ClientKeys, read_secret_file
from edgeback_blocks.manifest import Manifest
from edgeback_blocks.pipeline import restore_disk
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.pool_wire import PoolKind
from edgeback_blocks.rbd import RbdPool
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import HOST_HEARTBEAT, Topology, run_routing_key, worker_runs
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import BackupType, PlanRun
from edgeback_core.settings import Secret
from edgeback_pools.pool_meta import create_pool
from edgeback_worker.handlers import serve_runs
from edgeback_worker.settings import WorkerSettings

pytestmark = pytest.mark.integration

HOST = "bkhost1"
POOL = "runs"
MIB = 1024 * 1024
T = 30.0
R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    bus: Bus
    node: NodeProcess
    emulator: EmulatorProcess
    pool_dir: Path

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)


@pytest.fixture
async def world(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> AsyncIterator[World]:
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    async with AsyncExitStack() as stack:
        urls = Urls(amqp=amqp_url, mongo=mongo_url, ceph_conf=ceph_conf)
        world = await serve_world(stack, tmp_path, urls, topology, vms=5, disk_mib="5,8")
        worker_bus = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
        settings = WorkerSettings.load(
            {
                "EDGEBACK_WORKER_HOST_ID": HOST,
                "EDGEBACK_WORKER_WORKER_ID": "w-test",
                "EDGEBACK_WORKER_POOL_DIR": str(world.pool_dir),
                "EDGEBACK_WORKER_PROGRESS_INTERVAL_S": "0.5",
                "EDGEBACK_WORKER_CLAIM_S": "3",  # renewed each second: a cancel is seen fast
            }
        )
        consumer = await serve_runs(worker_bus, settings)
        stack.push_async_callback(consumer.stop)
        yield world


@dataclass(frozen=True, slots=True, kw_only=True)
class Urls:
    amqp: str
    mongo: str
    ceph_conf: str


async def serve_world(
    stack: AsyncExitStack, tmp_path: Path, urls: Urls, topology: Topology, *, vms: int,
    disk_mib: str,
) -> World:  # fmt: skip
    """Everything of a run but the workers, closed with ``stack``: a node process with
    the pool and this host's files for it, the emulator with ``vms`` VMs, the catalog
    (on a database of its own) serving ``topology``, and a client bus."""
    pool_dir = tmp_path / "pools"
    pool_dir.mkdir()
    create_pool(tmp_path / "node", POOL, PoolKind.DEDUP)
    node = await stack.enter_async_context(node_process_async(tmp_path / "node"))
    write_pool_files(pool_dir, node, POOL)
    emulator = stack.enter_context(
        emulator_process(urls.ceph_conf, tmp_path / "cloud", vms=vms, disk_mib=disk_mib)
    )
    db = await stack.enter_async_context(
        CatalogDb.open(urls.mongo, f"test_runs_{uuid.uuid4().hex[:12]}")
    )
    stack.push_async_callback(db.drop)
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    server = await stack.enter_async_context(AmqpBus.open(urls.amqp, topology))
    catalog = Catalog.build(db, box, offline_after=timedelta(seconds=60), probe=None, events=server)
    await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
    stack.push_async_callback(server.delete_topology, [worker_runs(BackupHostId(HOST))])
    client = await stack.enter_async_context(AmqpBus.open(urls.amqp, topology))
    return World(bus=client, node=node, emulator=emulator, pool_dir=pool_dir)


async def _job(world: World, options: j.JobOptions | None = None) -> j.JobInfo:
    beat = m.HostHeartbeat(host_id=HOST, hostname="bk", version="1", capacity_bytes=1)
    await world.bus.publish("events", HOST_HEARTBEAT, beat)
    platform = await platform_of_host(world.call, HOST, world.emulator)
    spec = j.JobSpec(
        name="nightly",
        type="full",
        content=j.JobContent(
            vms=[j.VmSelection(platform_id=platform.id)], exclude_names=["db-*", "cache-*"]
        ),
        target=j.JobTarget(host_id=HOST, pool=j.PoolRef(node_url=world.node.url, name=POOL)),
        options=options or j.JobOptions(vm_retries=0, streams_per_disk=2, disks_per_vm=2),
    )
    return await world.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=spec), j.JobInfo)


async def _run(world: World, job: j.JobInfo, key: str, kind: BackupType) -> b.RunDetail:
    run_id = await _start(world, job, key, kind)
    return await _ended(world, run_id)


async def _start(world: World, job: j.JobInfo, key: str, kind: BackupType) -> str:
    start = b.RunStart(
        actor=ADMIN, job_id=job.id, requested_by="test", idempotency_key=key, backup_type=kind
    )
    started = await world.call(b.RUN_START, start, b.RunStartReply)
    plan = PlanRun(
        run_id=started.run.id, job_id=job.id, job_revision=job.revision, host_id=HOST,
        backup_type=kind,
    )  # fmt: skip
    await world.bus.publish("commands", run_routing_key(BackupHostId(HOST)), plan)
    return started.run.id


async def _ended(world: World, run_id: str) -> b.RunDetail:
    get = b.RunDetailGet(actor=ADMIN, run_id=run_id)
    async with asyncio.timeout(60):
        while True:
            detail = await world.call(b.RUN_DETAIL, get, b.RunDetail)
            if detail.run.state in ("succeeded", "partially_succeeded", "failed", "cancelled"):
                return detail
            await asyncio.sleep(0.3)


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
    run_id = await _start(world, job, "cancel-me", "full")
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
    detail = await _ended(world, run_id)
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
