"""The worker's RPCs, served under names that carry this backup host's id, and its
backup runs, consumed from the host's run queue.

The catalog calls the RPCs before it stores a platform, a Ceph storage or a pool, to
refresh a pool's status and to list a platform's content: only a worker of the chosen
backup host reaches that network.
Several workers of one host share each name (the broker hands a call to one of them).
Runs and restores: ``PlanRun``, ``RunVmTask``, ``PlanRestore`` and ``RestoreVmTask``
(``HostCommand``) arrive on ``worker.runs.<host_id>`` (prefetch 1), which every worker
of the host competes on (docs/runs.md, docs/restores.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import structlog

from edgeback_core.bus.port import Bus, ConsumerHandle, Envelope
from edgeback_core.bus.topology import worker_runs
from edgeback_core.messages import worker as w
from edgeback_core.messages.restores import HostCommand, PlanRestore, RestoreVmTask
from edgeback_core.messages.runs import PlanRun
from edgeback_worker.platform_checks import PlatformProbe
from edgeback_worker.pool_check import PoolProbe
from edgeback_worker.restoreplan import RestorePlanner
from edgeback_worker.restoretask import RestoreVmTasks
from edgeback_worker.runcatalog import RunCatalog
from edgeback_worker.runcontext import RunContext
from edgeback_worker.runplan import Planner
from edgeback_worker.settings import WorkerSettings
from edgeback_worker.storage_check import StorageProbe
from edgeback_worker.vmtask import VmTasks


async def serve_worker_rpcs(bus: Bus, settings: WorkerSettings) -> list[ConsumerHandle]:
    """Serve ``worker.<host_id>.platform.check|inventory``, ``.storage.check`` and
    ``.pool.status``."""
    host = settings.resolved_host_id
    platform = PlatformProbe(
        host_id=host,
        retries=settings.check_retries,
        connect_timeout_s=settings.platform_connect_timeout_s,
        timeout_s=settings.platform_timeout_s,
        ca_file=settings.ca_file,
    )
    storage = StorageProbe(host_id=host, connect_timeout_s=settings.ceph_connect_timeout_s)
    pool = PoolProbe(
        host_id=host,
        pool_dir=Path(settings.pool_dir),
        ca_file=settings.ca_file,
        timeout_s=settings.pool_check_timeout_s,
    )
    return [
        await bus.serve_rpc(w.platform_check_rpc(host), platform.check, w.PlatformCheck),
        await bus.serve_rpc(
            w.platform_inventory_rpc(host), platform.inventory, w.PlatformInventoryRequest
        ),
        await bus.serve_rpc(w.storage_check_rpc(host), storage.check, w.StorageCheck),
        await bus.serve_rpc(w.pool_status_rpc(host), pool.status, w.PoolStatusCheck),
    ]


async def serve_runs(bus: Bus, settings: WorkerSettings) -> ConsumerHandle:
    """Consume this host's run queue: plan runs and restores, back up and restore VMs."""
    worker_id = settings.resolved_worker_id
    ctx = RunContext(bus=bus, catalog=RunCatalog(bus=bus, worker_id=worker_id), settings=settings)
    planner, tasks = Planner(ctx), VmTasks(ctx)
    restore_planner, restore_tasks = RestorePlanner(ctx), RestoreVmTasks(ctx)

    async def handle(command: HostCommand, envelope: Envelope) -> None:
        if isinstance(command, PlanRestore | RestoreVmTask):
            ids = {"restore_id": command.restore_id}
        else:
            ids = {"run_id": command.run_id}
        with structlog.contextvars.bound_contextvars(
            **ids, message_id=envelope.message_id, worker=worker_id
        ):
            match command:
                case PlanRun():
                    await planner.plan(command)
                case PlanRestore():
                    await restore_planner.plan(command)
                case RestoreVmTask():
                    await restore_tasks.run(command)
                case _:
                    await tasks.run(command)

    union = cast(type[HostCommand], HostCommand)
    return await bus.consume(worker_runs(settings.resolved_host_id), handle, union)
