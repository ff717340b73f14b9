"""Restore runs end to end, every service its own process: the catalog (``python -m
edgeback_catalog``), two workers of one backup host (``python -m edgeback_worker``) and a
storage node (``python -m edgeback_dedup``), with the platform emulator (a process too)
on the real Ceph cluster, RabbitMQ and the catalog DB.

The emulator seeds three VMs of two disks: the source (6 and 8 MiB: one size not a
multiple of the 4 MiB chunk) and a target for new paths (10 and 8 MiB). Backups are
runs of a job started as the API and the scheduler start them (``StartRun``); restores
are created and started as the API does (``catalog.restore.create``, then
``catalog.restore.start`` with the verification code it answered). Every restored disk
is compared with the bytes of the RBD snapshot its backup was taken from (a larger
target disk: those bytes, then zeros).

- Full, incremental after changes, cumulative after more: each restore point restored
  to the original path (snapshot before overwrite, VM started after) and to a new path
  (the target VM, disks crossed).
- The worker restoring is SIGKILLed mid-disk (24 and 32 MiB disks there, restore
  speed 4 MiB/s): the other worker
  takes the VM over once the claim expired and finishes it from the disks'
  checkpoints; the safety snapshot is taken once and removed at the end.
- The catalog's database is dropped (catalog stopped, started again on the empty
  database), ``edgeback catalog import`` rebuilds the restore points from the pool, and
  they restore byte-identical.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec
import pymongo
import pytest
from tests.e2e.services import HostServices, service_process, start_host_services, stop_service
from tests.support.backup_host import ADMIN, platform_of_host, write_pool_files
from tests.support.cli_runner import edgeback
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import NodeProcess, ServiceProcess, node_process
from tests.support.restore_runs import ENDED, restore_ended, start_restore
from tests.support.storage_node import TOKEN

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.pool_wire import PoolKind
from edgeback_blocks.rbd import RbdPool
from edgeback_catalog.domain import JobId
from edgeback_catalog.runstart import run_id_for
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import START_RUN, Topology
from edgeback_core.errors import InvalidRestoreError, NotFoundError
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages import restores as r
from edgeback_core.messages.runs import BackupType, StartRun
from edgeback_platform.models import Vm
from edgeback_pools.pool_meta import create_pool
from edgeback_worker.restoremarks import RestoreMark, checkpoint_key

pytestmark = pytest.mark.integration

HOST = "e2e-restores"
POOL = "restores"
MIB = 1 << 20
T = 30.0
R = TypeVar("R", bound=msgspec.Struct)


@dataclass(kw_only=True)
class Deployment:
    prefix: str
    tmp: Path
    services: HostServices
    mongo_url: str
    database: str
    catalog: ServiceProcess
    """The catalog process serving now (another one after ``lose_catalog_database``)."""
    node: NodeProcess
    emulator: EmulatorProcess
    pool_dir: Path
    ceph_conf: str
    stack: ExitStack

    def lose_catalog_database(self) -> ServiceProcess:
        """The catalog stopped, its database dropped, a new catalog process started on
        the empty database (same settings)."""
        stop_service(self.catalog)
        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(self.mongo_url) as client:
            client.drop_database(self.database)
            # (only this database: listing all of them races other tests on a shared server)
            assert client[self.database].list_collection_names() == []
        self.catalog = service_process("catalog", self.tmp, self.services.catalog_env, "-again")
        self.catalog.start()
        self.stack.callback(stop_service, self.catalog)
        return self.catalog


@pytest.fixture
def disk_mib() -> tuple[int, int, int]:
    """The sizes the emulator's seed draws disks from, MiB: with its fixed seed, the
    three VMs get (b, b), (a, b) and (c, b)."""
    return (6, 8, 10)


@pytest.fixture
def deployment(
    amqp_url: str, mongo_url: str, ceph_conf: str, tmp_path: Path, disk_mib: tuple[int, ...]
) -> Iterator[Deployment]:
    prefix, database = f"e2e-{uuid.uuid4().hex[:8]}.", f"e2e_restores_{uuid.uuid4().hex[:12]}"
    create_pool(tmp_path / "node", POOL, PoolKind.DEDUP)
    pool_dir = tmp_path / "pools"
    pool_dir.mkdir()
    with ExitStack() as stack:
        node = stack.enter_context(node_process(tmp_path / "node"))
        write_pool_files(pool_dir, node, POOL)
        emulator = stack.enter_context(
            emulator_process(
                ceph_conf, tmp_path / "cloud", vms=3, disk_mib=",".join(map(str, disk_mib)),
                disks="2", eligible=True, fill=0.5,
            )
        )  # fmt: skip
        services = start_host_services(
            stack, tmp_path, amqp_url=amqp_url, mongo_url=mongo_url, prefix=prefix,
            database=database, host=HOST, pool_dir=pool_dir, worker_ids=["w-a", "w-b"],
            worker_env={"EDGEBACK_WORKER_CHECKPOINT_INTERVAL_S": "1",
                        "EDGEBACK_WORKER_CLAIM_S": "3"},
        )  # fmt: skip
        yield Deployment(
            prefix=prefix, tmp=tmp_path, services=services, mongo_url=mongo_url,
            database=database, catalog=services.catalog, node=node,
            emulator=emulator, pool_dir=pool_dir, ceph_conf=ceph_conf, stack=stack,
        )  # fmt: skip


@dataclass(kw_only=True)
class Stage:
    """The test's view: a bus client of the deployment, RBD, the VMs, what was backed up."""

    at: Deployment
    bus: AmqpBus
    rbd: RbdPool
    source: Vm
    target: Vm
    platform_id: str = ""
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """Per backup set, per source disk: the bytes of the snapshot it was taken from."""
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per backup set, per source disk: its manifest version (what the pool knows)."""

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)

    async def register(self) -> None:
        """Activate the host, register the emulator and its Ceph storage."""
        platform = await platform_of_host(self.call, HOST, self.at.emulator)
        self.platform_id = platform.id

    def image(self, vm: Vm, disk_id: str) -> str:
        (disk,) = [d for d in vm.disks if d.id == disk_id]
        name = self.at.emulator.state().ceph.image_name(vm.id, disk)
        assert name is not None
        return name


@pytest.fixture
async def stage(
    deployment: Deployment, amqp_url: str, pool: RbdPool, disk_mib: tuple[int, int, int]
) -> AsyncIterator[Stage]:
    for service in (deployment.catalog, *deployment.services.workers):
        await service.wait_healthy(60)
    vms = deployment.emulator.state().vms
    a, b, c = disk_mib
    assert [[d.size // MIB for d in vm.disks] for vm in vms] == [[b, b], [a, b], [c, b]]
    async with AmqpBus.open(amqp_url, Topology(prefix=deployment.prefix)) as bus:
        stage = Stage(at=deployment, bus=bus, rbd=pool, source=vms[1], target=vms[2])
        await stage.register()
        yield stage


# --- backups ------------------------------------------------------------------------
async def _job(stage: Stage) -> j.JobInfo:
    """A job of the source VM alone into the pool."""
    others = [vm.name for vm in stage.at.emulator.state().vms if vm.id != stage.source.id]
    spec = j.JobSpec(
        name="e2e-restores",
        type="incremental",
        content=j.JobContent(
            vms=[j.VmSelection(platform_id=stage.platform_id)], exclude_names=others
        ),
        target=j.JobTarget(host_id=HOST, pool=j.PoolRef(node_url=stage.at.node.url, name=POOL)),
        options=j.JobOptions(vm_retries=0, streams_per_disk=2, disks_per_vm=2),
    )
    return await stage.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=spec), j.JobInfo)


async def _back_up(stage: Stage, job: j.JobInfo, kind: BackupType) -> str:
    """A run of ``job`` started as the API does; its backup set, whose snapshots' bytes
    are kept in ``stage.snapshots`` (read now: the next run may release them)."""
    key = f"e2e-{kind}"
    start = StartRun(job_id=job.id, requested_by="e2e", idempotency_key=key, backup_type=kind)
    await stage.bus.publish("commands", START_RUN, start)
    get = b.RunDetailGet(actor=ADMIN, run_id=run_id_for(JobId(job.id), key))
    async with asyncio.timeout(120):
        while True:
            try:
                detail = await stage.call(b.RUN_DETAIL, get, b.RunDetail)
            except NotFoundError:  # the catalog has not taken the command yet
                detail = None
            if detail is not None and detail.run.state in ENDED:
                break
            await asyncio.sleep(0.3)
    assert detail.run.state == "succeeded", detail
    (set_id,) = detail.backup_set_ids
    get_set = b.BackupSetGet(actor=ADMIN, backup_set_id=set_id)
    found = await stage.call(b.BACKUP_SET_GET, get_set, b.BackupSetWithDisks)
    assert found.backup_set is not None and found.backup_set.backup_type == kind
    taken = {}
    stage.versions[set_id] = {dv.disk_id: dv.manifest_version for dv in found.disks}
    for dv in found.disks:
        name = stage.image(stage.source, dv.disk_id)
        async with stage.rbd.open_image(name, snapshot=dv.snapshot_name) as snap:
            assert await snap.size() == dv.size_bytes
            taken[dv.disk_id] = await snap.read(0, dv.size_bytes)
    stage.snapshots[set_id] = taken
    return set_id


async def _change(stage: Stage, offset: int) -> None:
    """64 KiB of new bytes at ``offset`` of each source disk."""
    for disk in stage.source.disks:
        async with stage.rbd.open_image(stage.image(stage.source, disk.id), read_only=False) as im:
            await im.write(offset, os.urandom(64 * 1024))


async def _three_points(stage: Stage) -> list[str]:
    """A full, an incremental after changes, a cumulative after more: their set ids."""
    job = await _job(stage)
    full = await _back_up(stage, job, "full")
    await _change(stage, MIB)
    incr = await _back_up(stage, job, "incremental")
    await _change(stage, CHUNK_SIZE + MIB // 2)
    cumul = await _back_up(stage, job, "cumulative")
    assert len({hashlib.sha256(b"".join(stage.snapshots[s].values())).digest()
                for s in (full, incr, cumul)}) == 3  # fmt: skip
    return [full, incr, cumul]


# --- restores -----------------------------------------------------------------------
async def _restore(stage: Stage, spec: r.RestoreSpec) -> r.RestoreInfo:
    return await restore_ended(stage.call, await start_restore(stage.call, spec))


def _options(**changes: object) -> r.RestoreOptions:
    return msgspec.structs.replace(r.RestoreOptions(host_id=HOST, streams_per_disk=2), **changes)


def _original(set_id: str, opts: r.RestoreOptions) -> r.RestoreSpec:
    return r.RestoreSpec(backup_set_ids=[set_id], options=opts)


def _crossed(stage: Stage, set_id: str, *, onto: Vm | None = None) -> r.RestoreSpec:
    """A new path onto the target VM, source disk 0 onto its disk 1 and 1 onto 0 (each
    target disk at least as large), or onto ``onto`` disk for disk."""
    src, dst = stage.source.disks, (onto or stage.target).disks
    pairs = (
        [(src[0], dst[1]), (src[1], dst[0])] if onto is None else list(zip(src, dst, strict=True))
    )
    new_path = r.NewPath(
        platform_id=stage.platform_id, vm_id=(onto or stage.target).id,
        disks=[r.DiskMap(source_disk_id=s.id, target_disk_id=t.id) for s, t in pairs],
    )  # fmt: skip
    return r.RestoreSpec(
        backup_set_ids=[set_id], target=r.RestoreTarget(new_path=new_path), options=_options()
    )


async def _check_restored(
    stage: Stage, done: r.RestoreInfo, want: dict[str, bytes], *, whole: bool = True
) -> r.RestoreVmInfo:
    """Succeeded; every target disk holds its source disk's bytes in ``want`` (zeros past
    them); ``whole``: its figures cover the whole source disk (no resume)."""
    assert done.state == "succeeded", done
    (vm,) = done.vms
    assert vm.state == "succeeded", vm
    target = next(v for v in stage.at.emulator.state().vms if v.id == vm.target_vm.vm_id)
    assert sorted(s.source_disk_id for s in vm.stats) == sorted(want)
    for stats in vm.stats:
        source = want[stats.source_disk_id]
        async with stage.rbd.open_image(stage.image(target, stats.disk_id)) as image:
            size = await image.size()
            got = await image.read(0, size)
        assert size >= len(source)
        padded = source + bytes(size - len(source))
        assert _sha(got) == _sha(padded), (done.id, stats.source_disk_id, stats.disk_id)
        if whole:  # every byte written, or left where the target held it already
            assert stats.bytes_written + stats.bytes_zeroed + stats.bytes_left == len(source)
    return vm


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_full_incremental_cumulative_restore_to_both_paths_byte_identical(
    stage: Stage,
) -> None:
    points = await _three_points(stage)
    first_disk_sizes = sorted(len(x) for x in stage.snapshots[points[0]].values())
    assert first_disk_sizes == [6 * MIB, 8 * MIB] and any(s % CHUNK_SIZE for s in first_disk_sizes)
    for set_id in points:
        opts = _options(snapshot_before_overwrite=True, start_vm_after=True)
        done = await _restore(stage, _original(set_id, opts))
        vm = await _check_restored(stage, done, stage.snapshots[set_id])
        assert (vm.backup_set_id, vm.target_vm.vm_id, vm.vm_started) == (
            set_id, stage.source.id, True
        )  # fmt: skip
        crossed = await _restore(stage, _crossed(stage, set_id))
        vm = await _check_restored(stage, crossed, stage.snapshots[set_id])
        assert (vm.backup_set_id, vm.target_vm.vm_id) == (set_id, stage.target.id)
    state = stage.at.emulator.state()
    assert next(v for v in state.vms if v.id == stage.source.id).state == "running"


async def _marks(stage: Stage, rid: str) -> dict[str, int]:
    """Each source disk's restore checkpoint on its image: the first chunk not covered."""
    found: dict[str, int] = {}
    for disk in stage.source.disks:
        async with stage.rbd.open_image(stage.image(stage.source, disk.id)) as image:
            mark = await image.metadata_get(checkpoint_key(rid))
        found[disk.id] = (
            0 if mark is None else msgspec.json.decode(mark, type=RestoreMark).next_index
        )
    return found


async def _holder_mid_disk(stage: Stage, rid: str) -> str:
    """The worker restoring the VM, once a disk's checkpoint covers part of it."""
    get = r.RestoreGet(actor=ADMIN, restore_id=rid)
    sizes: dict[str, int] = {d.id: d.size for d in stage.source.disks}
    async with asyncio.timeout(60):
        while True:
            info = await stage.call(r.RESTORE_GET, get, r.RestoreInfo)
            assert info.state not in ENDED, info
            running = [vm for vm in info.vms if vm.state == "running" and vm.worker_id]
            marks = await _marks(stage, rid)
            if running and any(0 < k * CHUNK_SIZE < sizes[d] for d, k in marks.items()):
                return running[0].worker_id
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("disk_mib", [(24, 32, 40)])  # chunks enough for a checkpoint mid-disk
async def test_a_worker_killed_mid_restore_is_taken_over_and_resumed(stage: Stage) -> None:
    job = await _job(stage)
    full = await _back_up(stage, job, "full")
    await _change(stage, 0)  # the VM changed since: the restore has bytes to put back
    seen = len(stage.at.emulator.state().events)
    # every chunk rewritten (the disks still hold the backup's snapshot, and only chunk
    # 0 changed since: a changed-only restore would be over before a checkpoint)
    opts = _options(
        snapshot_before_overwrite=True, restore_speed=[j.SpeedWindow(rate=4)], changed_only=False
    )
    rid = await start_restore(stage.call, _original(full, opts))
    holder = await _holder_mid_disk(stage, rid)
    victim = stage.at.services.worker(holder)
    victim.kill()  # SIGKILL: no last checkpoint, no release of claim or leases
    at_kill = await _marks(stage, rid)  # the dead worker cannot move them any more
    done = await restore_ended(stage.call, rid, within_s=120)

    vm = await _check_restored(stage, done, stage.snapshots[full], whole=False)
    assert vm.worker_id != holder and vm.worker_id in ("w-a", "w-b"), vm
    sizes: dict[str, int] = {d.id: d.size for d in stage.source.disks}
    assert any(0 < k * CHUNK_SIZE < sizes[d] for d, k in at_kill.items()), at_kill
    for stats in vm.stats:  # the survivor wrote only what the checkpoint did not cover
        left = max(0, sizes[stats.disk_id] - at_kill[stats.disk_id] * CHUNK_SIZE)
        covered = stats.bytes_written + stats.bytes_zeroed + stats.bytes_left
        assert covered == left, (stats, at_kill)
    assert await _marks(stage, rid) == {d: 0 for d in sizes}  # removed at the end
    events = stage.at.emulator.state().events[seen:]
    mine = [(e.kind, e.snapshot_id) for e in events if e.vm_id == stage.source.id]
    created = [snap for kind, snap in mine if kind == "snapshot_created"]
    assert len(created) == 1, mine  # the survivor found the safety snapshot's marks
    assert ("snapshot_deleted", created[0]) in mine, mine
    assert not [e for e in victim.log_events() if e.get("event") == "vm_restore.succeeded"]


async def test_restores_from_a_catalog_rebuilt_from_the_pool_are_byte_identical(
    stage: Stage, monkeypatch: pytest.MonkeyPatch, amqp_url: str
) -> None:
    job = await _job(stage)
    full = await _back_up(stage, job, "full")
    await _change(stage, MIB)
    incr = await _back_up(stage, job, "incremental")
    await _change(stage, 2 * MIB)  # the VM changed since both

    catalog = stage.at.lose_catalog_database()
    await catalog.wait_healthy(60)
    await stage.register()  # the host (its heartbeat), the platform and storage again
    query = r.RestorePointsQuery(actor=ADMIN, vm_id=stage.source.id)
    assert (await stage.call(r.RESTORE_POINTS, query, r.RestorePointsReply)).points == []

    monkeypatch.setenv("EDGEBACK_AMQP_URL", amqp_url)
    monkeypatch.setenv("EDGEBACK_BUS_PREFIX", stage.at.prefix)
    keys = stage.at.pool_dir
    imported = await edgeback(
        "catalog", "import", "--from", stage.at.node.url, "--pool", POOL,
        "--key-file", str(keys / f"{POOL}.key"), "--secret-key-file", str(keys / f"{POOL}.secret"),
        "--json", token=TOKEN, ceph_conf=stage.at.ceph_conf,
    )  # fmt: skip
    assert imported.code == 0, imported.err
    summary = imported.json
    assert (summary["backup_sets_added"], summary["disk_versions_added"]) == (2, 4), summary
    found = (await stage.call(r.RESTORE_POINTS, query, r.RestorePointsReply)).points
    by_versions = {frozenset(v.items()): set_id for set_id, v in stage.versions.items()}
    point_of = {
        by_versions[frozenset((d.disk_id, d.manifest_version) for d in p.disks)]: p for p in found
    }
    assert set(point_of) == {full, incr}
    assert {point_of[full].backup_type, point_of[incr].backup_type} == {"full", "incremental"}

    # an imported point names no platform: its original path is refused at create (it
    # once crashed the worker's task, then failed there "not_found")
    lost = _original(point_of[full].backup_set_id, _options())
    with pytest.raises(InvalidRestoreError) as refused:
        await stage.call(
            r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=lost), r.RestoreCreated
        )
    assert refused.value.details["codes"] == [r.POINT_NO_ORIGINAL_VM]
    onto_itself = _crossed(stage, point_of[full].backup_set_id, onto=stage.source)
    done = await _restore(stage, onto_itself)
    await _check_restored(stage, done, stage.snapshots[full])
    crossed = _crossed(stage, point_of[incr].backup_set_id)
    done = await _restore(stage, crossed)
    await _check_restored(stage, done, stage.snapshots[incr])
