"""``PlanRestore`` on a worker of the restore's backup host (docs/restores.md).

Taken only while the restore is ``queued`` or ``running`` (a redelivery): the
precondition first (non-zero: the restore ends ``failed`` with ``precondition_failed``,
nothing touched), then the VM tasks recorded in the catalog (one per restore point; a
redelivered plan gets the same list), the restore moved to ``running``,
``RestoreStarted`` published, then one ``RestoreVmTask`` per pending VM under a stable
message id, taking the target physical hosts in turn. Every step is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from edgeback_core.bus.topology import run_routing_key
from edgeback_core.errors import InvalidTransitionError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import restores as rs
from edgeback_worker.runcontext import RunContext, now
from edgeback_worker.runplan import PRECONDITION_FAILED
from edgeback_worker.runrules import across_physical_hosts, restore_task_message_id
from edgeback_worker.scripts import run_job_script

log = structlog.get_logger(__name__)

_PLANNABLE = frozenset({"queued", "running"})


@dataclass(frozen=True, slots=True)
class RestorePlanner:
    ctx: RunContext

    async def plan(self, cmd: rs.PlanRestore) -> None:
        restore = await self.ctx.catalog.restore(cmd.restore_id)
        if restore.state not in _PLANNABLE:
            log.info("restore.not_planned", restore_id=restore.id, state=restore.state)
            return
        log.info("restore.planning", restore_id=restore.id, worker=self.ctx.worker_id)
        if not await self._precondition_holds(restore):
            return
        tasks = await self.ctx.catalog.restore_plan(restore.id)
        await self._transition(restore.id, "running", "planned")
        # before the tasks: a consumer sees the restore start before any of its VMs
        await self.ctx.publish(
            rs.RestoreStarted(
                restore_id=restore.id, host_id=cmd.host_id, vm_count=len(tasks),
                requested_by=restore.created_by, at=now(),
            )
        )  # fmt: skip
        for task in across_physical_hosts(tasks, lambda t: t.target_vm.physical_host_id):
            if task.state == "pending":
                await self._publish_task(cmd.host_id, task)
        log.info("restore.planned", restore_id=restore.id, vms=len(tasks))

    async def _precondition_holds(self, restore: rs.RestoreInfo) -> bool:
        script = restore.spec.options.precondition
        if script is None:
            return True
        env = {"restore_id": restore.id, "phase": "precondition"}
        if (await run_job_script(script, env)).ok:
            return True
        # the catalog announces RestoreFinished (code from the transition's reason)
        await self._transition(restore.id, "failed", PRECONDITION_FAILED)
        return False

    async def _transition(self, restore_id: str, target: rs.RestoreStateName, reason: str) -> None:
        try:
            await self.ctx.catalog.restore_transition(restore_id, target, reason)
        except InvalidTransitionError:  # already there or past it (a redelivery)
            log.debug("restore.transition_skipped", restore_id=restore_id, target=target)

    async def _publish_task(self, host_id: str, task: rs.RestoreVmInfo) -> None:
        command = rs.RestoreVmTask(
            restore_id=task.restore_id, host_id=host_id, backup_set_id=task.backup_set_id,
            target_vm=task.target_vm, disks=task.disks, attempt=task.attempt,
        )  # fmt: skip
        await self.ctx.bus.publish(
            "commands",
            run_routing_key(BackupHostId(host_id)),
            command,
            message_id=restore_task_message_id(task.restore_id, task.backup_set_id, task.attempt),
        )
