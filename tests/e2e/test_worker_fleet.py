"""A worker fleet scales a run without more cores (issue 8, features X10 and B5).

The catalog, a storage node, the platform emulator (8 VMs of one 8 MiB disk on 2
physical hosts, on real Ceph) and the workers are separate processes; the workers
connect as their backup host's broker user ``host-<id>``. The same job, limited to 3
VMs per run and 2 per physical host and throttled to 1 MiB/s per worker process
(backup and transfer speed), runs once on 3 workers of the host and, after two of them
stopped, once on the last one (each run to its own pool, so both do the same work).
Concurrency is measured from the run log (``VmStarted`` .. ``VmFinished`` of each VM,
recorded while its leases are held): it never exceeds a limit and reaches both with 3
workers. With the data path, not the 2 cores, as the bound, 3 workers finish the run
at least 2.5 times faster than 1: about 2.9 expected, as 8 VMs take 3 rounds on 3
workers and each worker's throttle starts with a VM's worth (4 MiB) of budget, while
every VM after the first costs a worker 4 s (its overhead of about a second overlaps
the throttle refilling).
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from tests.e2e.services import forget_deployment
from tests.integration.conftest import BrokerUsers
from tests.support.backup_host import ADMIN, platform_of_host, write_pool_files
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import (
    NodeProcess,
    ServiceProcess,
    catalog_service,
    free_port,
    node_process_async,
)

from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import START_RUN, Topology, worker_runs
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages import runs as r
from edgeback_pools.pool_meta import create_pool

pytestmark = pytest.mark.integration

T = 30.0
VMS, PHYSICAL_HOSTS, VM_MIB = 8, 2, 4
PARALLEL_VMS, PER_PHYSICAL_HOST = 3, 2
WORKER_KIBPS = 1170
"""Per worker process: a 4 MiB VM every 3.5 s. Its token buckets hold up to 4 MiB, so a
worker's overhead between VMs (about a second, up to 3.5 s) overlaps their refilling."""
R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    bus: AmqpBus
    host: str
    tmp: Path
    node: NodeProcess
    cloud: EmulatorProcess
    common: dict[str, str]
    host_url: str
    pool_dir: Path

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)

    def worker(self, name: str) -> ServiceProcess:
        """A worker of the host, connected as ``host-<id>``; one more process."""
        port = free_port()
        env = self.common | {
            "EDGEBACK_AMQP_URL": self.host_url,
            "EDGEBACK_WORKER_HEALTH_PORT": str(port),
            "EDGEBACK_WORKER_HOST_ID": self.host,
            "EDGEBACK_WORKER_WORKER_ID": name,
            "EDGEBACK_WORKER_HEARTBEAT_S": "1",
            "EDGEBACK_WORKER_DATA_DIR": str(self.tmp),
            "EDGEBACK_WORKER_POOL_DIR": str(self.pool_dir),
        }
        return ServiceProcess("worker", port, env, self.tmp / f"{name}.log")


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    wall_s: float
    max_run: int
    max_per_host: int
    workers: frozenset[str]
    detail: b.RunDetail
    timeline: str
    """Each VM: worker, physical host, start and end (seconds after the run's creation)."""


@pytest.fixture
async def fleet(
    amqp_url: str, mongo_url: str, ceph_conf: str, tmp_path: Path
) -> AsyncIterator[Fleet]:
    prefix, host = f"t-{uuid.uuid4().hex[:10]}.", f"fleet{uuid.uuid4().hex[:8]}"
    database = f"test_fleet_{uuid.uuid4().hex[:12]}"
    topology = Topology(prefix=prefix)
    common = {
        "EDGEBACK_BUS_PREFIX": prefix,
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_GRACE_S": "5",
    }
    for pool in ("one", "three"):
        create_pool(tmp_path / "node", pool, PoolKind.DEDUP)
    users = BrokerUsers(amqp_url, topology)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(
            asyncio.to_thread,
            forget_deployment,
            amqp_url,
            mongo_url,
            prefix=prefix,
            database=database,
        )
        stack.push_async_callback(users.drop)
        # rabbitmqctl takes seconds: the host's broker user is made while the rest starts
        host_user = asyncio.create_task(users.url(f"host-{host}"))
        stack.callback(host_user.cancel)
        node = await stack.enter_async_context(node_process_async(tmp_path / "node"))
        pool_dir = _host_files(tmp_path / "pools", node)
        cloud = stack.enter_context(
            emulator_process(
                ceph_conf, tmp_path / "cloud", vms=VMS, hosts=PHYSICAL_HOSTS,
                disk_mib=str(VM_MIB), eligible=True, disks="1", fill=1.0,
            )
        )  # fmt: skip
        catalog = catalog_service(
            common, mongo_url=mongo_url, database=database, log_path=tmp_path / "catalog.log",
            master_key=base64.b64encode(os.urandom(32)).decode(),
        )  # fmt: skip
        catalog.start()
        stack.callback(catalog.kill)
        bus = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
        stack.push_async_callback(bus.delete_topology, [worker_runs(BackupHostId(host))])
        await catalog.wait_healthy()
        yield Fleet(
            bus=bus, host=host, tmp=tmp_path, node=node, cloud=cloud, common=common,
            host_url=await host_user, pool_dir=pool_dir,
        )  # fmt: skip


def _host_files(pool_dir: Path, node: NodeProcess) -> Path:
    pool_dir.mkdir()
    for pool in ("one", "three"):
        write_pool_files(pool_dir, node, pool)
    return pool_dir


async def _workers(fleet: Fleet, stack: AsyncExitStack, *names_: str) -> list[ServiceProcess]:
    procs = [fleet.worker(name) for name in names_]
    for proc in procs:
        proc.start()
        stack.callback(proc.kill)
    for proc in procs:
        await proc.wait_healthy(within_s=60)
    return procs


async def _jobs(fleet: Fleet) -> dict[str, j.JobInfo]:
    """The host activated (its workers' heartbeat registers it), the platform and its
    Ceph storage checked by a worker, and one job per pool: the same VMs and limits."""
    platform = await platform_of_host(fleet.call, fleet.host, fleet.cloud)
    speed = [j.SpeedWindow(rate=WORKER_KIBPS, unit="KiB/s")]  # the whole day
    options = j.JobOptions(
        parallel_vms=PARALLEL_VMS, vms_per_physical_host=PER_PHYSICAL_HOST, disks_per_vm=1,
        streams_per_disk=2, vm_retries=0, backup_speed=speed, transfer_speed=speed,
    )  # fmt: skip
    jobs = {}
    for pool in ("one", "three"):
        spec = j.JobSpec(
            name=f"fleet-{pool}",
            content=j.JobContent(vms=[j.VmSelection(platform_id=platform.id)]),
            target=j.JobTarget(
                host_id=fleet.host, pool=j.PoolRef(node_url=fleet.node.url, name=pool)
            ),
            options=options,
        )
        jobs[pool] = await fleet.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=spec), j.JobInfo)
    return jobs


async def _run(fleet: Fleet, job: j.JobInfo) -> Measured:
    """Start a run of ``job`` as the scheduler would (``StartRun``), wait for its end and
    every VM's in the run log, and measure it from there."""
    start = r.StartRun(job_id=job.id, requested_by="test", idempotency_key="fleet")
    await fleet.bus.publish("commands", START_RUN, start)
    async with asyncio.timeout(120):
        while True:
            events = await _events(fleet, job.id)
            finished = [e for e in events if isinstance(e, r.RunFinished)]
            # the catalog announces the run's end when the last VM finishes, which may be
            # before that VM's worker published its VmFinished
            if finished and sum(isinstance(e, r.VmFinished) for e in events) >= VMS:
                break
            await asyncio.sleep(0.25)
    (end,) = finished
    detail = await fleet.call(
        b.RUN_DETAIL, b.RunDetailGet(actor=ADMIN, run_id=end.run_id), b.RunDetail
    )
    started = [e for e in events if isinstance(e, r.VmStarted)]
    spans = _spans(started, [e for e in events if isinstance(e, r.VmFinished)])
    per_host = {
        host: _most_at_once(s for vm, s in spans.items() if vm.physical_host_id == host)
        for host in {vm.physical_host_id for vm in spans}
    }
    return Measured(
        wall_s=(end.at - detail.run.created_at).total_seconds(),
        max_run=_most_at_once(spans.values()),
        max_per_host=max(per_host.values()),
        workers=frozenset(e.worker_id for e in started),
        detail=detail,
        timeline=_timeline(started, spans, detail.run.created_at),
    )


async def _events(fleet: Fleet, job_id: str) -> list[r.RunEvent]:
    found: list[r.RunEvent] = []
    after = None
    while True:
        page = await fleet.call(
            b.RUN_EVENTS, b.RunEventsGet(actor=ADMIN, job_id=job_id, after=after, limit=500),
            b.RunEventsReply,
        )  # fmt: skip
        found += [entry.event for entry in page.events]
        if page.next_after is None:
            return found
        after = page.next_after


Span = tuple[datetime, datetime]


def _spans(started: list[r.VmStarted], finished: list[r.VmFinished]) -> dict[r.VmRef, Span]:
    """Each VM's time from its ``VmStarted`` to its ``VmFinished`` (one attempt each)."""
    ends = {e.vm: e.at for e in finished}
    assert len(ends) == len(finished) == len(started) == VMS, (started, finished)
    return {e.vm: (e.at, ends[e.vm]) for e in started}


def _timeline(started: list[r.VmStarted], spans: dict[r.VmRef, Span], origin: datetime) -> str:
    rows = []
    for e in sorted(started, key=lambda e: e.at):
        start, end = ((t - origin).total_seconds() for t in spans[e.vm])
        rows.append(f"{e.worker_id} {e.vm.physical_host_id[:8]} {start:5.1f}-{end:5.1f}")
    return "\n".join(rows)


def _most_at_once(spans: Iterable[Span]) -> int:
    """The most spans open at one instant; one that ends when another starts is closed."""
    edges = sorted(edge for start, end in spans for edge in ((start, 1), (end, -1)))
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


async def test_three_workers_keep_the_limits_and_finish_over_2_5_times_faster(
    fleet: Fleet,
) -> None:
    async with AsyncExitStack() as workers:
        _, *others = await _workers(fleet, workers, "w1", "w2", "w3")
        jobs = await _jobs(fleet)
        three = await _run(fleet, jobs["three"])
        for proc in others:
            assert proc.terminate(within_s=15) == 0
        one = await _run(fleet, jobs["one"])
    ratio = one.wall_s / three.wall_s
    print(
        f"fleet: 1 worker {one.wall_s:.1f}s, 3 workers {three.wall_s:.1f}s, ratio {ratio:.2f}; "
        f"at once per run {one.max_run}/{three.max_run}, "
        f"per physical host {one.max_per_host}/{three.max_per_host}\n{three.timeline}"
    )
    for run in (one, three):
        assert run.detail.run.state == "succeeded", run.detail
        assert run.detail.stats.bytes_read == VMS * VM_MIB * 2**20  # the same work twice
    assert one.workers == {"w1"}
    assert (one.max_run, one.max_per_host) == (1, 1)
    assert three.workers == {"w1", "w2", "w3"}
    assert three.max_run == PARALLEL_VMS
    assert three.max_per_host == PER_PHYSICAL_HOST
    assert ratio >= 2.5
