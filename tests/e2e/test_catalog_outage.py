"""Backup runs that outlive their catalog, through real processes (issue 8, "Faults").

The catalog, a worker of the backup host, the storage node and the platform emulator
(on real Ceph) are separate processes; the catalog DB and RabbitMQ are the dev stack's.
One VM with two 64 MiB disks, read at a job speed limit so a backup takes seconds. The
catalog is SIGKILLed once both disks have a checkpoint (its RPC queues go with it: the
worker's calls find no server) and started again on the same database:

- back within the job's reconnect time (ten minutes; it is out for longer than the
  worker's 3 s claim, which lapses meanwhile): the worker keeps reading, its calls are
  tried again until the catalog answers, it keeps its claim, the run succeeds and each
  disk restores byte-identical to its snapshot;
- out for longer than the reconnect time (capped at 4 s for the test,
  ``EDGEBACK_WORKER_RECONNECT_CAP_S``): the worker fails the VM with
  ``catalog_unreachable``, keeps its checkpoints, and records that outcome when the
  catalog is back; the run ends failed and its backup set is no restore point.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from tests.e2e.services import forget_deployment
from tests.e2e.test_worker_resume import OPTIONS, Stage, _checkpoint_files, _checkpoints, _events
from tests.integration.conftest import NewImage
from tests.integration.test_catalog_rpc import ADMIN
from tests.integration.test_worker_runs import _check_restores, _job
from tests.support.processes import ServiceProcess, catalog_service
from tests.support.run_world import HOST, RunWorld, run_ended, serve_data_side, start_run

from edgeback_blocks.rbd import RbdPool
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import Topology, worker_runs
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import backups as b
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import VmFinished

pytestmark = pytest.mark.integration

CAP_S = "4"
"""The long outage's reconnect time (a job's own is at least a minute)."""


@dataclass(kw_only=True)
class Outage:
    stage: Stage
    """Its ``workers`` hold every process the test started, the catalogs too (killed first
    at the end)."""
    catalog: ServiceProcess
    """The catalog process serving now."""

    def kill_catalog(self) -> None:
        self.catalog.kill()  # SIGKILL: no goodbye, its RPC queues vanish with it

    async def restart_catalog(self) -> None:
        again = ServiceProcess(
            "catalog", self.catalog.health_port, self.catalog.env,
            self.catalog.log_path.with_suffix(f".{len(self.stage.workers)}.log"),
        )  # fmt: skip
        self.stage.workers.append(again)
        again.start()
        self.catalog = again
        await again.wait_healthy(within_s=60)


@pytest.fixture
async def outage(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> AsyncIterator[Outage]:
    prefix = f"t-{uuid.uuid4().hex[:10]}."
    database = f"test_outage_{uuid.uuid4().hex[:12]}"
    topology = Topology(prefix=prefix)
    common = {"EDGEBACK_BUS_PREFIX": prefix, "EDGEBACK_LOG_JSON": "true", "EDGEBACK_GRACE_S": "5"}
    async with AsyncExitStack() as stack:
        stack.push_async_callback(
            asyncio.to_thread, forget_deployment, amqp_url, mongo_url, prefix=prefix,
            database=database, queues=[worker_runs(BackupHostId(HOST))],
        )  # fmt: skip
        node, emulator, pool_dir = await serve_data_side(
            stack, tmp_path, ceph_conf=ceph_conf, vms=1, disk_mib="64"
        )
        catalog = catalog_service(
            common, mongo_url=mongo_url, database=database, log_path=tmp_path / "catalog.log",
            master_key=base64.b64encode(os.urandom(32)).decode(),
        )  # fmt: skip
        catalog.start()
        stack.callback(catalog.kill)
        client = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
        world = RunWorld(
            bus=client, node=node, emulator=emulator, pool_dir=pool_dir, amqp_url=amqp_url,
            topology=topology,
        )  # fmt: skip
        stage = Stage(world=world, prefix=prefix, amqp_url=amqp_url, tmp=tmp_path)
        stage.workers.append(catalog)
        found = Outage(stage=stage, catalog=catalog)
        stack.callback(stage.kill_all)  # first out: nothing may talk to the rest after
        await catalog.wait_healthy(within_s=60)
        yield found


async def _logged(worker: ServiceProcess, event: str, *, within_s: float = 60) -> dict[str, object]:
    """The first ``event`` line of ``worker``'s log, once it is there."""
    async with asyncio.timeout(within_s):
        while True:
            found = [e for e in worker.log_events() if e.get("event") == event]
            if found:
                return found[0]
            await asyncio.sleep(0.1)


async def test_a_catalog_outage_shorter_than_the_reconnect_time_is_ridden_out(
    outage: Outage, pool: RbdPool, new_image: NewImage
) -> None:
    world = outage.stage.world
    worker = await outage.stage.worker("w-short")
    job = await _job(world, OPTIONS)  # the reconnect time: its default ten minutes
    run_id = await start_run(world, job, "short", "full")
    await _checkpoints(world, count=2)
    outage.kill_catalog()
    await _logged(worker, "catalog.retry")  # the worker noticed
    await asyncio.sleep(4)  # out for longer than the worker's 3 s claim
    await outage.restart_catalog()
    detail = await run_ended(world, run_id, within_s=120)
    assert detail.run.state == "succeeded", detail
    await _check_restores(world, detail, pool, new_image)

    events = worker.log_events()
    retried = [e for e in events if e.get("event") == "catalog.retry"]
    assert {e["error_code"] for e in retried} <= {"unavailable", "timeout"}, retried
    kinds = {e.get("event") for e in events}
    assert not kinds & {"catalog.lost", "vm.claim_lost", "vm.failed"}, kinds
    (finished,) = [e for e in await _events(world, run_id) if isinstance(e, VmFinished)]
    assert finished.outcome == "succeeded"
    assert any("catalog did not answer" in w for w in finished.warnings), finished
    assert _checkpoint_files(world) == []  # removed with each commit


async def test_a_longer_catalog_outage_fails_the_vm_and_keeps_its_checkpoints(
    outage: Outage,
) -> None:
    world = outage.stage.world
    worker = await outage.stage.worker("w-long", {"EDGEBACK_WORKER_RECONNECT_CAP_S": CAP_S})
    slow = msgspec.structs.replace(OPTIONS, backup_speed=[j.SpeedWindow(rate=2)])
    job = await _job(world, slow)  # 2 MiB/s: the disks take far longer than the cap
    run_id = await start_run(world, job, "long", "full")
    await _checkpoints(world, count=2)
    outage.kill_catalog()
    gave_up = await _logged(worker, "vm.failed")  # the claim's renewal gave up
    assert gave_up["code"] == "catalog_unreachable", gave_up
    await outage.restart_catalog()
    detail = await run_ended(world, run_id, within_s=120)

    assert detail.run.state == "failed", detail
    (vm,) = detail.vms
    assert (vm.state, vm.code) == ("failed", "catalog_unreachable"), vm
    assert detail.backup_set_ids == []
    listed = b.BackupSetList(actor=ADMIN, run_id=run_id)
    sets = (await world.call(b.BACKUP_SET_LIST, listed, b.BackupSetListReply)).backup_sets
    assert not [s for s in sets if s.complete], sets  # nothing half-written looks complete
    assert len(_checkpoint_files(world)) == 2  # each disk's resume point stays for a retry
    (finished,) = [e for e in await _events(world, run_id) if isinstance(e, VmFinished)]
    assert (finished.outcome, finished.code) == ("failed", "catalog_unreachable"), finished
    assert [e for e in worker.log_events() if e.get("event") == "catalog.lost"]
