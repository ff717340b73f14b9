"""``PlanRun`` on a worker of the job's backup host (docs/runs.md, step 2).

The precondition first (non-zero: the run fails ``precondition_failed`` and nothing is
touched), then the job's content resolved through its platforms, the VM list recorded
in the catalog (the first list recorded wins, so a redelivered ``PlanRun`` publishes
the same tasks), the run moved to ``running``, ``RunStarted`` published, then one
``RunVmTask`` per pending VM under a stable message id (queued taking the physical
hosts in turn). Every step is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from edgeback_core.bus.topology import run_routing_key
from edgeback_core.errors import InvalidTransitionError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages.jobs import JobInfo
from edgeback_core.messages.runs import PlanRun, RunStarted, RunVmTask, VmRef
from edgeback_platform.models import Vm
from edgeback_worker.runcontext import RunContext, now
from edgeback_worker.runrules import across_physical_hosts, resolve_content, task_message_id
from edgeback_worker.scripts import run_job_script

log = structlog.get_logger(__name__)

PRECONDITION_FAILED = "precondition_failed"


@dataclass(frozen=True, slots=True)
class Planner:
    ctx: RunContext

    async def plan(self, cmd: PlanRun) -> None:
        log.info("run.planning", run_id=cmd.run_id, job_id=cmd.job_id, worker=self.ctx.worker_id)
        job = await self.ctx.catalog.job(cmd.job_id)
        if not await self._precondition_holds(cmd, job):
            return
        vms = await self._resolve(job)
        tasks = await self.ctx.catalog.plan(cmd.run_id, vms)
        await self._to_running(cmd.run_id)
        # before the tasks: another worker may start (and finish) a VM at once, and a
        # consumer should see the run start before any of its VMs, or its end
        await self.ctx.publish(
            RunStarted(
                run_id=cmd.run_id, job_id=cmd.job_id, host_id=cmd.host_id,
                backup_type=cmd.backup_type, vm_count=len(tasks),
                requested_by=cmd.requested_by, at=now(),
            )
        )  # fmt: skip
        for task in across_physical_hosts(tasks, lambda t: t.vm.physical_host_id):
            if task.state == "pending":
                await self._publish_task(cmd, task.vm, task.attempt)
        if not tasks:
            await self.ctx.catalog.run_finish(cmd.run_id, f"{cmd.run_id}/plan/empty")
        log.info("run.planned", run_id=cmd.run_id, vms=len(tasks))

    async def _precondition_holds(self, cmd: PlanRun, job: JobInfo) -> bool:
        script = job.spec.options.precondition
        if script is None:
            return True
        env = {"run_id": cmd.run_id, "job_id": cmd.job_id, "phase": "precondition"}
        result = await run_job_script(script, env)
        if result.ok:
            return True
        # the catalog announces RunFinished (code from the transition's reason)
        await self._transition(cmd.run_id, "failed", PRECONDITION_FAILED)
        return False

    async def _resolve(self, job: JobInfo) -> list[VmRef]:
        content = job.spec.content
        listed: dict[str, list[Vm]] = {}
        for platform_id in dict.fromkeys(sel.platform_id for sel in content.vms):
            async with self.ctx.platform(platform_id, job.spec.options) as platform:
                listed[platform_id] = await platform.list_vms(None)
        return resolve_content(content, listed)

    async def _to_running(self, run_id: str) -> None:
        for target in ("queued", "running"):
            await self._transition(run_id, target, "planned")

    async def _transition(self, run_id: str, target: m.RunStateName, reason: str) -> None:
        try:
            await self.ctx.catalog.transition(run_id, target, f"{run_id}/plan/{target}", reason)
        except InvalidTransitionError:  # already there or past it (a redelivery)
            log.debug("run.transition_skipped", run_id=run_id, target=target)

    async def _publish_task(self, cmd: PlanRun, vm: VmRef, attempt: int) -> None:
        task = RunVmTask(
            run_id=cmd.run_id, job_id=cmd.job_id, job_revision=cmd.job_revision,
            host_id=cmd.host_id, vm=vm, backup_type=cmd.backup_type, attempt=attempt,
        )  # fmt: skip
        await self.ctx.bus.publish(
            "commands",
            run_routing_key(BackupHostId(cmd.host_id)),
            task,
            message_id=task_message_id(cmd.run_id, vm.vm_id, attempt),
        )
