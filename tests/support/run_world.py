"""A backup host's runs, for the worker-runs tests and the runs benchmark.

The catalog on the catalog DB and RabbitMQ in this process, a storage node process with
dedup pools and a platform emulator on real Ceph (:func:`serve_world`; the last two
alone: :func:`serve_data_side`, for a test that runs the catalog as a process); workers of the
host in this process, each on its own connection as separate worker processes would be
(:func:`host_workers`), or as processes started by the test. Helpers register the host,
the platform and its storage, create a job and drive a run to its end (docs/runs.md).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import msgspec
from tests.integration.conftest import TEST_IDENTITIES
from tests.support.backup_host import ADMIN, platform_of_host, write_pool_files
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import NodeProcess, ServiceProcess, free_port, node_process_async

from edgeback_blocks.pool_wire import PoolKind
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_cli.runwatch import FINAL_STATES
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import (
    HOST_HEARTBEAT,
    QUEUES,
    Topology,
    run_routing_key,
    worker_runs,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import BackupType, PlanRun
from edgeback_core.settings import Secret
from edgeback_pools.pool_meta import create_pool
from edgeback_worker.handlers import serve_runs
from edgeback_worker.settings import WorkerSettings

HOST = "bkhost1"
POOL = "runs"
T = 30.0
"""Seconds one RPC may take (the machine is shared and slow)."""
R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeding:
    """How the emulator seeds its VMs beyond their number and disk sizes."""

    fill: float = 0.3
    disks: str = ""
    """Disks per VM, taken in turn ("2,3"); default one to three."""
    eligible: bool = False
    """Every VM can be backed up (the seed otherwise cycles through refusals)."""
    timeout_s: float = 120
    prepare: Callable[[Path], None] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunWorld:
    """A served world: ``bus`` is a client of the catalog (and publishes to the host)."""

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)

    bus: Bus
    node: NodeProcess
    emulator: EmulatorProcess
    pool_dir: Path
    amqp_url: str
    topology: Topology


async def serve_world(
    stack: AsyncExitStack, tmp_path: Path, topology: Topology, *, amqp_url: str,
    mongo_url: str, ceph_conf: str, vms: int, disk_mib: str, seeding: Seeding = Seeding(),
    pools: Sequence[str] = (POOL,), node_threads: int = 2,
    node_env: Mapping[str, str] | None = None,
) -> RunWorld:  # fmt: skip
    """Everything of a run but the workers, closed with ``stack``: a node process with
    ``pools`` and this host's files for them, the emulator with ``vms`` VMs, the catalog
    (on a database of its own) serving ``topology``, and a client bus."""
    node, emulator, pool_dir = await serve_data_side(
        stack, tmp_path, ceph_conf=ceph_conf, vms=vms, disk_mib=disk_mib, seeding=seeding,
        pools=pools, node_threads=node_threads, node_env=node_env,
    )  # fmt: skip
    db = await stack.enter_async_context(
        CatalogDb.open(mongo_url, f"test_runs_{uuid.uuid4().hex[:12]}")
    )
    stack.push_async_callback(db.drop)
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    server = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
    catalog = Catalog.build(db, box, offline_after=timedelta(seconds=60), probe=None, events=server)
    await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
    # every durable queue of the prefix: quorum queues left behind slow the shared broker
    stack.push_async_callback(server.delete_topology, [*QUEUES, worker_runs(BackupHostId(HOST))])
    client = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
    return RunWorld(
        bus=client, node=node, emulator=emulator, pool_dir=pool_dir, amqp_url=amqp_url,
        topology=topology,
    )  # fmt: skip


async def serve_data_side(
    stack: AsyncExitStack, tmp_path: Path, *, ceph_conf: str, vms: int, disk_mib: str,
    seeding: Seeding = Seeding(), pools: Sequence[str] = (POOL,), node_threads: int = 2,
    node_env: Mapping[str, str] | None = None,
) -> tuple[NodeProcess, EmulatorProcess, Path]:  # fmt: skip
    """The node process with ``pools``, this host's files for them (the folder is the
    third value) and the emulator with ``vms`` VMs, closed with ``stack``."""
    pool_dir = tmp_path / "pools"
    pool_dir.mkdir()
    for pool in pools:
        create_pool(tmp_path / "node", pool, PoolKind.DEDUP)
    node = await stack.enter_async_context(
        node_process_async(tmp_path / "node", threads=node_threads, env=node_env)
    )
    for pool in pools:
        write_pool_files(pool_dir, node, pool)
    emulator = stack.enter_context(
        emulator_process(
            ceph_conf, tmp_path / "cloud", vms=vms, disk_mib=disk_mib, fill=seeding.fill,
            disks=seeding.disks, eligible=seeding.eligible,
            seed_timeout_s=seeding.timeout_s,
            prepare=seeding.prepare,
        )
    )  # fmt: skip
    return node, emulator, pool_dir


@asynccontextmanager
async def host_workers(
    world: RunWorld, count: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[None]:
    """``count`` workers of the backup host in this process, each on its own connection,
    consuming its run queue until the block ends; ``env`` adds worker settings."""
    async with AsyncExitStack() as stack:
        for index in range(count):
            bus = await stack.enter_async_context(AmqpBus.open(world.amqp_url, world.topology))
            settings = WorkerSettings.load(
                {
                    "EDGEBACK_WORKER_HOST_ID": HOST,
                    "EDGEBACK_WORKER_WORKER_ID": f"w-test-{index}",
                    "EDGEBACK_WORKER_POOL_DIR": str(world.pool_dir),
                    "EDGEBACK_WORKER_PROGRESS_INTERVAL_S": "0.5",
                    **(env or {}),
                }
            )
            consumer = await serve_runs(bus, settings)
            stack.push_async_callback(consumer.stop)
        yield


def worker_process(
    world: RunWorld, tmp_path: Path, name: str, env: Mapping[str, str] | None = None
) -> ServiceProcess:
    """A worker process of the backup host (``start`` it): JSON log in ``<name>.log``,
    ``env`` adds worker settings."""
    port = free_port()
    settings = {
        "EDGEBACK_AMQP_URL": world.amqp_url,
        "EDGEBACK_BUS_PREFIX": world.topology.prefix,
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_GRACE_S": "5",
        "EDGEBACK_WORKER_HEALTH_PORT": str(port),
        "EDGEBACK_WORKER_HOST_ID": HOST,
        "EDGEBACK_WORKER_WORKER_ID": name,
        "EDGEBACK_WORKER_DATA_DIR": str(tmp_path),
        "EDGEBACK_WORKER_POOL_DIR": str(world.pool_dir),
        **(env or {}),
    }
    return ServiceProcess("worker", port, settings, tmp_path / f"{name}.log")


async def add_platform(world: RunWorld) -> str:
    """The host's heartbeat, then its platform (the emulator) and Ceph storage in the
    catalog; the platform's id."""
    beat = m.HostHeartbeat(host_id=HOST, hostname="bk", version="1", capacity_bytes=1)
    await world.bus.publish("events", HOST_HEARTBEAT, beat)
    platform = await platform_of_host(world.call, HOST, world.emulator)
    return platform.id


async def create_job(
    world: RunWorld,
    platform_id: str,
    *,
    name: str,
    pool: str,
    options: j.JobOptions,
    exclude_names: Sequence[str] = (),
) -> j.JobInfo:
    """A full-backup job of every VM of the platform (but ``exclude_names``) into ``pool``."""
    spec = j.JobSpec(
        name=name,
        type="full",
        content=j.JobContent(
            vms=[j.VmSelection(platform_id=platform_id)], exclude_names=list(exclude_names)
        ),
        target=j.JobTarget(host_id=HOST, pool=j.PoolRef(node_url=world.node.url, name=pool)),
        options=options,
    )
    return await world.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=spec), j.JobInfo)


async def start_run(world: RunWorld, job: j.JobInfo, key: str, kind: BackupType) -> str:
    """Start a run of ``job`` and hand its plan to the host's workers; the run's id."""
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


async def run_ended(
    world: RunWorld, run_id: str, *, within_s: float = 60, poll_s: float = 0.3
) -> b.RunDetail:
    """The run's detail once it ended (succeeded, partially, failed or cancelled)."""
    get = b.RunDetailGet(actor=ADMIN, run_id=run_id)
    async with asyncio.timeout(within_s):
        while True:
            detail = await world.call(b.RUN_DETAIL, get, b.RunDetail)
            if detail.run.state in FINAL_STATES:
                return detail
            await asyncio.sleep(poll_s)


async def run_job(
    world: RunWorld,
    job: j.JobInfo,
    key: str,
    kind: BackupType,
    *,
    within_s: float = 60,
    poll_s: float = 0.3,
) -> b.RunDetail:
    """A run of ``job`` from its start to its end."""
    run_id = await start_run(world, job, key, kind)
    return await run_ended(world, run_id, within_s=within_s, poll_s=poll_s)
