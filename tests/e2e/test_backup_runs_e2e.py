"""Backup runs end to end, every service its own process: the catalog
(``python -m edgeback_catalog``), two workers of one backup host (``python -m
edgeback_worker``) and a storage node (``python -m edgeback_dedup``), with the platform
emulator (a process too) on the real Ceph cluster, RabbitMQ and the catalog DB.

A job of four VMs with two or three disks each (uneven sizes, some not a multiple of
the 4 MiB chunk) is started the way the API and the scheduler start it (``StartRun`` on
the commands exchange): a full, then an incremental after some disks changed, then a
cumulative after others did. Every disk version, restored with ``edgeback disk
restore`` run as a process into a new RBD image, is byte-identical to the RBD snapshot
it was taken from. Meanwhile an outside consumer (plain aio-pika, its own exclusive
queue on the events exchange) sees each run's events from ``RunStarted`` to
``RunFinished``, every body valid against the AsyncAPI document with no field it does
not describe.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from tests.bench.images import image_sha256, remove_image
from tests.e2e.services import start_host_services
from tests.integration.test_catalog_rpc import ADMIN
from tests.support.asyncapi import payload_validator
from tests.support.backup_host import write_pool_files
from tests.support.cli_runner import edgeback
from tests.support.emulator.state import EmulatorState
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.event_tap import EventTap, Tapped, tap_events
from tests.support.processes import NodeProcess, ServiceProcess, node_process
from tests.support.storage_node import TOKEN

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.pool_wire import PoolKind
from edgeback_blocks.rbd import RbdPool
from edgeback_catalog.domain import JobId
from edgeback_catalog.runstart import run_id_for
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import START_RUN, Topology
from edgeback_core.errors import NotFoundError
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as rpc
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import BackupType, StartRun
from edgeback_platform.models import VmId
from edgeback_pools.pool_meta import create_pool

pytestmark = pytest.mark.integration

HOST = "e2e-runs"
POOL = "runs"
MIB = 1024 * 1024
T = 30.0
RUN_END_S = 120.0
DOC = json.loads((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json").read_text())
EXCLUDED = ["db-*", "mq-*"]
"""Of the six seeded VMs, these two would be refused (guest agent down or missing)."""
R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    prefix: str
    catalog: ServiceProcess
    workers: list[ServiceProcess]
    node: NodeProcess
    emulator: EmulatorProcess
    pool_dir: Path
    ceph_conf: str


@pytest.fixture
def deployment(
    amqp_url: str, mongo_url: str, ceph_conf: str, tmp_path: Path
) -> Iterator[Deployment]:
    prefix, database = f"e2e-{uuid.uuid4().hex[:8]}.", f"e2e_runs_{uuid.uuid4().hex[:12]}"
    create_pool(tmp_path / "node", POOL, PoolKind.DEDUP)
    pool_dir = tmp_path / "pools"
    with ExitStack() as stack:
        node = stack.enter_context(node_process(tmp_path / "node"))
        pool_dir.mkdir()
        write_pool_files(pool_dir, node, POOL)
        emulator = stack.enter_context(
            emulator_process(ceph_conf, tmp_path / "cloud", vms=6, disk_mib="5,7,8,10", disks="2,3")
        )
        services = start_host_services(
            stack, tmp_path, amqp_url=amqp_url, mongo_url=mongo_url, prefix=prefix,
            database=database, host=HOST, pool_dir=pool_dir, worker_ids=["w-a", "w-b"],
        )  # fmt: skip
        yield Deployment(
            prefix=prefix, catalog=services.catalog, workers=services.workers, node=node,
            emulator=emulator,
            pool_dir=pool_dir, ceph_conf=ceph_conf,
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """The test's view: a bus client of the deployment, RBD, the outside consumer."""

    bus: AmqpBus
    rbd: RbdPool
    tap: EventTap
    at: Deployment
    restored: list[str]
    cli_slots: asyncio.Semaphore

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)


@pytest.fixture
async def client(deployment: Deployment, amqp_url: str, pool: RbdPool) -> AsyncIterator[Client]:
    for service in (deployment.catalog, *deployment.workers):
        await service.wait_healthy(60)
    topology = Topology(prefix=deployment.prefix)
    restored: list[str] = []
    async with AsyncExitStack() as stack:
        bus = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
        exchange = topology.exchange("events")
        tap = await stack.enter_async_context(
            tap_events(amqp_url, exchange, ["run.event.#", "backup.event.#"])
        )
        slots = asyncio.Semaphore(4)  # CLI processes at once: the machine has two cores
        yield Client(bus=bus, rbd=pool, tap=tap, at=deployment, restored=restored, cli_slots=slots)
        await asyncio.gather(*(remove_image(pool, name) for name in restored))


async def test_full_incremental_cumulative_restore_byte_identical_and_events_valid(
    client: Client,
) -> None:
    job = await _job(client)
    state = client.at.emulator.state()
    vms = [vm for vm in state.vms if not vm.name.startswith(("db-", "mq-"))]
    assert [len(vm.disks) for vm in vms] == [2, 2, 2, 3]
    sizes = [d.size for vm in vms for d in vm.disks]
    assert len(set(sizes)) > 1 and any(size % CHUNK_SIZE for size in sizes), sizes

    full = await _run(client, job, "full")
    full_sets = await _check_run(client, full, "full")
    assert all(s.base_backup_set_id is None for s in full_sets.values())
    assert full.stats.bytes_read > 0

    changed_first = await _change(client, state, vms[:2], offset=MIB)
    incr = await _run(client, job, "incremental")
    incr_sets = await _check_run(client, incr, "incremental")
    for vm_id, found in incr_sets.items():
        assert found.base_backup_set_id == full_sets[vm_id].id  # the last set: the full
    assert incr.stats.bytes_read == changed_first  # the changed chunks, nothing else

    changed_next = await _change(client, state, vms[2:3], offset=CHUNK_SIZE + MIB // 2)
    cumul = await _run(client, job, "cumulative")
    cumul_sets = await _check_run(client, cumul, "cumulative")
    for vm_id, found in cumul_sets.items():
        assert found.base_backup_set_id == full_sets[vm_id].id  # the last full, not the incr
    assert cumul.stats.bytes_read == changed_first + changed_next  # everything since the full


async def _job(client: Client) -> j.JobInfo:
    """Activate the worker's host once its heartbeat registered it; register the
    emulator, its Ceph storage, and a job of its VMs (two excluded by name)."""
    async with asyncio.timeout(T):
        while True:
            try:
                activate = m.HostActivate(actor=ADMIN, host_id=HOST)
                await client.call(rpc.HOST_ACTIVATE, activate, m.HostInfo)
                break
            except NotFoundError:  # the worker's first heartbeat is on its way
                await asyncio.sleep(0.2)
    emu = client.at.emulator
    register = m.PlatformRegister(
        actor=ADMIN, name="edge", address="127.0.0.1", port=emu.port, ssl=False,
        access_key=emu.access_key, secret_key=emu.secret_key, default_host_id=HOST,
    )  # fmt: skip
    platform = await client.call(rpc.PLATFORM_REGISTER, register, m.PlatformInfo)
    ceph = emu.state().ceph
    storage = m.StorageAdd(
        actor=ADMIN, platform_id=platform.id, name="ceph", host_id=HOST, pool=ceph.pool,
        conf_path=ceph.conf,
    )  # fmt: skip
    await client.call(rpc.STORAGE_ADD, storage, m.StorageInfo)
    spec = j.JobSpec(
        name="e2e",
        type="incremental",
        content=j.JobContent(vms=[j.VmSelection(platform_id=platform.id)], exclude_names=EXCLUDED),
        target=j.JobTarget(host_id=HOST, pool=j.PoolRef(node_url=client.at.node.url, name=POOL)),
        options=j.JobOptions(vm_retries=0, streams_per_disk=2, disks_per_vm=2),
    )
    return await client.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=spec), j.JobInfo)


async def _run(client: Client, job: j.JobInfo, kind: BackupType) -> b.RunDetail:
    """Start a run as the API and the scheduler do; its detail once it ended."""
    key = f"e2e-{kind}"
    start = StartRun(job_id=job.id, requested_by="e2e", idempotency_key=key, backup_type=kind)
    await client.bus.publish("commands", START_RUN, start)
    get = b.RunDetailGet(actor=ADMIN, run_id=run_id_for(JobId(job.id), key))
    async with asyncio.timeout(RUN_END_S):
        while True:
            try:
                detail = await client.call(b.RUN_DETAIL, get, b.RunDetail)
            except NotFoundError:  # the catalog has not taken the command yet
                detail = None
            if detail is not None and detail.run.state in (
                "succeeded", "partially_succeeded", "failed", "cancelled"
            ):  # fmt: skip
                return detail
            await asyncio.sleep(0.3)


async def _check_run(
    client: Client, detail: b.RunDetail, kind: BackupType
) -> dict[str, b.BackupSetInfo]:
    """The run succeeded for every VM, its events are whole and valid, and each disk
    version restores to its snapshot's bytes; its backup sets by VM id."""
    assert detail.run.state == "succeeded", detail
    assert sorted(vm.vm.name for vm in detail.vms) == ["app-05", "cache-03", "files-06", "web-01"]
    await _check_events(client.tap, detail, kind)
    sets, restores = {}, []
    for set_id in detail.backup_set_ids:
        get = b.BackupSetGet(actor=ADMIN, backup_set_id=set_id)
        found = await client.call(b.BACKUP_SET_GET, get, b.BackupSetWithDisks)
        assert found.backup_set is not None and found.backup_set.complete
        assert found.backup_set.backup_type == kind
        assert len(found.disks) == found.backup_set.disk_count >= 2
        sets[found.backup_set.vm.vm_id] = found.backup_set
        restores += [_check_restore(client, found.backup_set, dv) for dv in found.disks]
    await asyncio.gather(*restores)
    assert len(sets) == 4
    return sets


async def _check_restore(client: Client, found: b.BackupSetInfo, dv: b.DiskVersionInfo) -> None:
    """``edgeback disk restore`` of ``dv`` into a new image: the bytes of its snapshot."""
    state = client.at.emulator.state()
    vm = state.vm(VmId(found.vm.vm_id))
    assert vm is not None
    (disk,) = (d for d in vm.disks if d.id == dv.disk_id)
    source = state.ceph.image_name(vm.id, disk)
    assert source is not None and disk.size == dv.size_bytes
    target = f"test-e2e-{uuid.uuid4().hex[:12]}"
    client.restored.append(target)
    node, pool_dir = client.at.node, client.at.pool_dir
    async with client.cli_slots:
        restored = await edgeback(
            "disk", "restore", f"{found.vm.vm_id}/{dv.disk_id}/{dv.manifest_version}",
            "--image", f"{client.rbd.name}/{target}",
            "--from", node.url, "--pool", POOL, "--key-file", str(pool_dir / f"{POOL}.key"),
            "--secret-key-file", str(pool_dir / f"{POOL}.secret"), "--json",
            token=TOKEN, ceph_conf=client.at.ceph_conf,
        )  # fmt: skip
    assert restored.code == 0, restored.err
    async with (
        client.rbd.open_image(source, snapshot=dv.snapshot_name) as src,
        client.rbd.open_image(target) as out,
    ):
        assert await out.size() == dv.size_bytes
        want = await image_sha256(src, dv.size_bytes)
        assert await image_sha256(out, dv.size_bytes) == want, (dv.disk_id, dv.manifest_version)


async def _check_events(tap: EventTap, detail: b.RunDetail, kind: BackupType) -> None:
    """The outside consumer saw the run from RunStarted to RunFinished, every body valid
    against the AsyncAPI document (strictly: no undocumented field)."""
    run_id = detail.run.id
    finished = await tap.wait_for(
        lambda t: t.type == "RunFinished" and t.body["run_id"] == run_id, within_s=T
    )
    mine = _unique([t for t in tap.messages if t.body.get("run_id") == run_id])
    for tapped in mine:
        assert tapped.type == tapped.body["type"], tapped
        payload_validator(DOC, tapped.routing_key, strict=True).validate(tapped.body)
    order = [t.type for t in mine if t.type != "RunProgress"]
    assert order[0] == "RunStarted" and order[-1] == "RunFinished", order
    started = mine[0].body
    assert (started["backup_type"], started["vm_count"]) == (kind, 4)
    assert started["requested_by"] == "e2e"  # the StartRun's
    assert mine[0].message_id == f"started:{run_id}"  # stable ids: a repeat is seen as one
    for tapped in mine:
        if tapped.type in ("VmStarted", "VmFinished"):
            vm, attempt = tapped.body["vm"]["vm_id"], tapped.body["attempt"]
            assert tapped.message_id and tapped.message_id.endswith(f":{run_id}/{vm}/{attempt}")
    assert finished.message_id == f"finished:{run_id}"
    counts = Counter(t.type for t in mine)
    assert counts["RunStarted"] == counts["RunFinished"] == 1, counts
    assert counts["VmStarted"] == counts["VmFinished"] == counts["BackupSetCreated"] == 4, counts
    assert not counts.keys() - {
        "RunStarted", "RunProgress", "VmStarted", "VmFinished", "BackupSetCreated", "RunFinished",
    }, counts  # fmt: skip
    assert all(t.body["outcome"] == "succeeded" for t in mine if t.type == "VmFinished")
    created = {t.body["backup_set_id"] for t in mine if t.type == "BackupSetCreated"}
    assert created == set(detail.backup_set_ids)
    end = finished.body
    assert (end["outcome"], end["vms_succeeded"]) == ("succeeded", 4), end
    assert end["stats"]["bytes_read"] == detail.stats.bytes_read


def _unique(tapped: list[Tapped]) -> list[Tapped]:
    """Arrival order, a message published again (same message id) once."""
    seen: dict[str | None, Tapped] = {}
    for t in tapped:
        assert t.message_id, t
        seen.setdefault(t.message_id, t)
    return list(seen.values())


async def _change(client: Client, state: EmulatorState, vms: list[Any], *, offset: int) -> int:
    """Write 64 KiB at ``offset`` of every disk of ``vms``; the bytes of the chunks
    touched (what a backup against an earlier snapshot reads again)."""
    touched = 0
    for vm in vms:
        for disk in vm.disks:
            name = state.ceph.image_name(vm.id, disk)
            assert name is not None
            async with client.rbd.open_image(name, read_only=False) as image:
                await image.write(offset, os.urandom(64 * 1024))
            start = offset // CHUNK_SIZE * CHUNK_SIZE
            touched += min(disk.size, start + CHUNK_SIZE) - start
    return touched
