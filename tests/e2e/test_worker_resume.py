"""Backup runs that outlive their worker and their storage node, through real processes.

The workers run as ``python -m edgeback_worker`` processes of one backup host, the
storage node and the platform emulator (on real Ceph) as processes too; the catalog
serves in the test on the catalog DB and RabbitMQ. One VM with two 64 MiB disks, read
at a job speed limit of 4 MiB/s so a backup takes seconds:

- the worker is SIGKILLed mid-disk once both disks have a checkpoint; a second worker
  process of the same host takes the task over and finishes the run: each disk restores
  byte-identical to its snapshot, each was read again only where the checkpoint left
  at kill time did not cover it, and the VM keeps exactly one snapshot;
- the storage node is frozen (SIGSTOP) mid-upload for longer than the worker's node
  timeout but shorter than the job's reconnect time: the worker keeps retrying, the run
  succeeds and restores byte-identical.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from tests.integration.conftest import NewImage
from tests.integration.test_catalog_rpc import ADMIN
from tests.integration.test_worker_runs import World, _check_restores, _job, _run
from tests.support.processes import ServiceProcess
from tests.support.run_world import POOL, serve_world, worker_process
from tests.support.storage_node import TOKEN

from edgeback_blocks.extents import plan_chunks
from edgeback_blocks.keys import ClientKeys, read_secret_file
from edgeback_blocks.manifest import ManifestBuilder
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import RbdPool
from edgeback_core.bus.topology import Topology
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import RunEvent, RunFinished, VmFinished

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
OPTIONS = j.JobOptions(
    vm_retries=0, streams_per_disk=2, disks_per_vm=2, backup_speed=[j.SpeedWindow(rate=4)]
)
"""Reads at 4 MiB/s per worker (about 13 s for the VM's 52 MiB of data); the reconnect
time stays at its default ten minutes, far longer than any outage here."""


@dataclass(kw_only=True)
class Stage:
    world: World
    prefix: str
    amqp_url: str
    tmp: Path
    workers: list[ServiceProcess] = field(default_factory=list)

    async def worker(self, name: str, extra: Mapping[str, str] | None = None) -> ServiceProcess:
        """A worker process of the backup host, healthy: 1 s checkpoints, 3 s claims,
        a storage node that is silent for 2 s counts as a lost connection; ``extra``
        adds settings."""
        proc = worker_process(self.world, self.tmp, name, {
            "EDGEBACK_WORKER_HEARTBEAT_S": "1",
            "EDGEBACK_WORKER_CHECKPOINT_INTERVAL_S": "1",
            "EDGEBACK_WORKER_CLAIM_S": "3",
            "EDGEBACK_WORKER_NODE_TIMEOUT_S": "2",
            "EDGEBACK_WORKER_PROGRESS_INTERVAL_S": "0.5",
            **(extra or {}),
        })  # fmt: skip
        proc.start()
        self.workers.append(proc)
        await proc.wait_healthy(within_s=60)
        return proc

    def kill_all(self) -> None:
        for proc in self.workers:
            proc.kill()


@pytest.fixture
async def stage(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> AsyncIterator[Stage]:
    prefix = f"t-{uuid.uuid4().hex[:10]}."
    async with AsyncExitStack() as stack:
        world = await serve_world(
            stack, tmp_path, Topology(prefix=prefix), amqp_url=amqp_url, mongo_url=mongo_url,
            ceph_conf=ceph_conf, vms=1, disk_mib="64",
        )  # fmt: skip
        stage = Stage(world=world, prefix=prefix, amqp_url=amqp_url, tmp=tmp_path)
        stack.callback(stage.kill_all)  # first out: nothing may talk to the rest after
        yield stage


def _checkpoint_files(world: World) -> list[Path]:
    return sorted((world.node.data_dir / POOL / "checkpoints").glob("*/*/*.ebm"))


async def _checkpoints(world: World, count: int) -> list[Path]:
    """Wait until ``count`` disks have a checkpoint in the pool."""
    async with asyncio.timeout(60):
        while True:
            found = _checkpoint_files(world)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


def _keys(world: World) -> ClientKeys:
    return ClientKeys.plain(
        read_secret_file(world.pool_dir / f"{POOL}.secret"), world.node.key(POOL)
    )


async def _saved(world: World, files: list[Path]) -> dict[str, ManifestBuilder]:
    """The checkpoint of each disk as the pool holds it now, by disk id."""
    builders = {}
    async with PoolClient(world.node.url, TOKEN, POOL) as client:
        for path in files:
            vm, disk, version = path.parent.parent.name, path.parent.name, path.stem
            data = await client.get_checkpoint(vm, disk, version)
            assert data is not None, path
            builders[disk] = ManifestBuilder.resume(data, _keys(world).manifest)
    return builders


async def _reads(rbd: RbdPool, dv: b.DiskVersionInfo, image: str) -> list[tuple[int, int]]:
    """(index, length) of every chunk a full backup of the disk version reads."""
    async with rbd.open_image(image, snapshot=dv.snapshot_name) as src:
        plan = plan_chunks(await src.diff_extents(None), dv.size_bytes)
    return [(index, plan.chunk_span(index)[1]) for index in plan.read]


def _image_of(world: World, dv: b.DiskVersionInfo, vm_id: str) -> str:
    state = world.emulator.state()
    (vm,) = [v for v in state.vms if v.id == vm_id]
    (disk,) = [d for d in vm.disks if d.id == dv.disk_id]
    name = state.ceph.image_name(vm.id, disk)
    assert name is not None
    return name


async def test_a_worker_killed_mid_disk_is_resumed_from_its_checkpoint(
    stage: Stage, pool: RbdPool, new_image: NewImage
) -> None:
    world = stage.world
    first = await stage.worker("w-first")
    job = await _job(world, OPTIONS)
    running = asyncio.create_task(_run(world, job, "killed", "full"))
    files = await _checkpoints(world, count=2)
    await asyncio.sleep(2)  # a few chunks past the first checkpoints
    first.kill()  # SIGKILL: no last checkpoint, no release of claim or leases
    assert not running.done()
    saved = await _saved(world, files)
    second = await stage.worker("w-second")
    detail = await running
    assert detail.run.state == "succeeded", detail

    (found,) = await _check_restores(world, detail, pool, new_image)
    assert found.backup_set is not None
    covered_total = 0
    for dv in found.disks:
        reads = await _reads(pool, dv, _image_of(world, dv, found.backup_set.vm.vm_id))
        done = saved[dv.disk_id]
        covered = sum(n for i, n in reads if done.is_done(i))
        left = sum(n for i, n in reads if not done.is_done(i))
        assert left > 0, "the kill came after the disk was read: nothing to resume"
        # the resumed worker reads exactly the chunks the checkpoint does not cover
        assert dv.stats.bytes_read == left, (dv.disk_id, covered, left)
        covered_total += covered
    assert covered_total >= 2 * 4 * MIB, "the checkpoints covered next to nothing"

    resumed = [e for e in second.log_events() if e.get("event") == "disk.resuming"]
    assert len(resumed) == 2
    assert not [e for e in first.log_events() if e.get("event") == "disk.backed_up"]
    assert _checkpoint_files(world) == []  # removed with each commit
    vm_id = found.backup_set.vm.vm_id
    snapshots = [s for s in world.emulator.state().snapshots if s.vm_id == vm_id]
    assert len(snapshots) == 1, snapshots  # the resumed task reused the first's snapshot


async def test_a_node_outage_shorter_than_the_reconnect_time_is_ridden_out(
    stage: Stage, pool: RbdPool, new_image: NewImage
) -> None:
    world = stage.world
    worker = await stage.worker("w-outage")
    # no request retries: only the reconnect time keeps a silent node's requests going
    job = await _job(world, msgspec.structs.replace(OPTIONS, request_retries=0))
    running = asyncio.create_task(_run(world, job, "outage", "full"))
    await _checkpoints(world, count=2)
    world.node.freeze()
    try:
        await asyncio.sleep(8)  # four node timeouts of the worker
    finally:
        world.node.thaw()
    detail = await running
    assert detail.run.state == "succeeded", detail
    await _check_restores(world, detail, pool, new_image)
    events = worker.log_events()
    retried = [e for e in events if e.get("event") == "node.retry"]
    assert retried, "the frozen node was never noticed"
    assert {e["error_code"] for e in retried} <= {"timeout", "unavailable"}
    assert not [e for e in events if e.get("event") == "node.lost"]
    (finished,) = [e for e in await _events(world, detail.run.id) if isinstance(e, VmFinished)]
    assert finished.outcome == "succeeded"
    assert any("storage node did not answer" in w for w in finished.warnings), finished


async def _events(world: World, run_id: str) -> list[RunEvent]:
    """The run's log as the catalog keeps it (the first page: a short run fits)."""
    async with asyncio.timeout(30):
        while True:  # the log consumer may trail the run's end by a moment
            get = b.RunEventsGet(actor=ADMIN, run_id=run_id, limit=500)
            page = await world.call(b.RUN_EVENTS, get, b.RunEventsReply)
            events = [entry.event for entry in page.events]
            if any(isinstance(e, RunFinished) for e in events):
                return events
            await asyncio.sleep(0.2)
