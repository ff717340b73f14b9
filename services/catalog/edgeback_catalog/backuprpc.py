"""The catalog RPCs of backup runs: start a run of a job, its VM tasks, disk commits,
backup sets and bases, leases (names: ``edgeback_core.messages.backups``).

Writes a worker makes need the ``service`` role; starting a run is open to whoever
sees the job (the API speaks for a user, the scheduler as a service).
"""

from __future__ import annotations

from typing import cast

from edgeback_catalog import backupwire as bw
from edgeback_catalog import wire
from edgeback_catalog.backupsets import DiskCommitRequest
from edgeback_catalog.domain import DiskVersion, JobId, RunId
from edgeback_catalog.gate import current_actor
from edgeback_catalog.jobscope import jobs_visible_to
from edgeback_catalog.listfilters import event_filters
from edgeback_catalog.routes import Route
from edgeback_catalog.runstart import StartRequest
from edgeback_catalog.runtasks import VmResult
from edgeback_catalog.service import Catalog
from edgeback_catalog.vmtaskstate import VmTaskState
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages.runs import BackupType


class BackupRpc:
    def __init__(self, catalog: Catalog) -> None:
        self._c = catalog

    def routes(self) -> list[Route]:
        return [
            Route(b.RUN_START, b.RunStart, self.run_start),
            Route(b.RUN_DETAIL, b.RunDetailGet, self.run_detail),
            Route(b.RUN_FINISH, b.RunFinish, self.run_finish),
            Route(b.RUN_CANCEL, b.RunCancel, self.run_cancel),
            Route(b.RUN_EVENTS, b.RunEventsGet, self.run_events),
            Route(b.VM_PLAN, b.VmPlan, self.vm_plan),
            Route(b.VM_START, b.VmStart, self.vm_start),
            Route(b.VM_FINISH, b.VmFinish, self.vm_finish),
            Route(b.VM_RENEW, b.VmRenew, self.vm_renew),
            Route(b.DISK_COMMIT, b.DiskCommit, self.disk_commit),
            Route(b.BACKUP_SET_GET, b.BackupSetGet, self.backup_set_get),
            Route(b.BACKUP_SET_LIST, b.BackupSetList, self.backup_set_list),
            Route(b.BACKUP_SET_BASE, b.BackupSetBaseGet, self.backup_set_base),
            Route(b.LEASE_ACQUIRE, b.LeaseAcquire, self.lease_acquire),
            Route(b.LEASE_RENEW, b.LeaseRenew, self.lease_renew),
            Route(b.LEASE_RELEASE, b.LeaseRelease, self.lease_release),
        ]

    # --- runs -----------------------------------------------------------------------
    async def run_start(self, req: b.RunStart) -> b.RunStartReply:
        request = StartRequest(
            job_id=JobId(req.job_id),
            requested_by=req.requested_by,
            idempotency_key=req.idempotency_key,
            backup_type=req.backup_type,
        )
        started = await self._c.run_starter.start(current_actor(), request)
        return b.RunStartReply(
            run=wire.run_info(started.run),
            applied=started.applied,
            job_revision=started.job_revision,
            backup_type=cast(BackupType, started.backup_type),
            pool=started.pool,
        )

    async def run_detail(self, req: b.RunDetailGet) -> b.RunDetail:
        run_id = RunId(req.run_id)
        run = await self._c.runs.get(run_id)
        tasks = await self._c.run_tasks.tasks(run_id)
        disks = await self._c.backup_sets.of_run(run_id)
        sets = sorted(
            {t.backup_set_id for t in tasks if t.state is VmTaskState.SUCCEEDED and t.backup_set_id}
        )
        return b.RunDetail(
            run=wire.run_info(run),
            vms=[bw.task_info(t) for t in tasks],
            backup_set_ids=sets,
            stats=bw.total_stats(disks),
        )

    async def run_finish(self, req: b.RunFinish) -> m.RunTransitionReply:
        current_actor().require_service("ending a run")
        outcome = await self._c.run_tasks.finish_run(
            RunId(req.run_id), req.request_id, abandon_unfinished=req.abandon_unfinished
        )
        return m.RunTransitionReply(run=wire.run_info(outcome.run), applied=outcome.applied)

    async def run_cancel(self, req: b.RunCancel) -> m.RunTransitionReply:
        actor = current_actor()
        outcome = await self._c.run_cancels.cancel(actor, RunId(req.run_id), req.reason)
        return m.RunTransitionReply(run=wire.run_info(outcome.run), applied=outcome.applied)

    async def run_events(self, req: b.RunEventsGet) -> b.RunEventsReply:
        actor = current_actor()
        if req.run_id is not None and not actor.sees_everything:
            await self._c.jobs.get(actor, (await self._c.runs.get(RunId(req.run_id))).job_id)
        elif req.job_id is not None:
            await self._c.jobs.get(actor, JobId(req.job_id))
        entries, after = await self._c.run_log.page(
            run_id=None if req.run_id is None else RunId(req.run_id),
            job_id=None if req.job_id is None else JobId(req.job_id),
            after=req.after,
            limit=req.limit,
            match=event_filters(req.type, req.since),
        )
        found = [
            b.RunLogEntry(message_id=e.message_id, received_at=e.received_at, event=e.event)
            for e in entries
        ]
        return b.RunEventsReply(events=found, next_after=after)

    # --- VM tasks -------------------------------------------------------------------
    async def vm_plan(self, req: b.VmPlan) -> b.VmPlanReply:
        current_actor().require_service("planning a run's VMs")
        tasks = await self._c.run_tasks.plan(RunId(req.run_id), req.vms)
        return b.VmPlanReply(vms=[bw.task_info(t) for t in tasks])

    async def vm_start(self, req: b.VmStart) -> b.VmTaskReply:
        current_actor().require_service("starting a VM task")
        done = await self._c.run_tasks.start(
            RunId(req.run_id), req.vm, req.attempt, req.worker_id, req.claim_s
        )
        state = await self._run_state(req.run_id)
        return b.VmTaskReply(task=bw.task_info(done.task), applied=done.applied, run_state=state)

    async def vm_renew(self, req: b.VmRenew) -> b.VmTaskReply:
        current_actor().require_service("renewing a VM task")
        task = await self._c.run_tasks.renew(
            RunId(req.run_id), req.vm_id, req.attempt, req.worker_id, req.claim_s
        )
        state = await self._run_state(req.run_id)
        return b.VmTaskReply(task=bw.task_info(task), applied=True, run_state=state)

    async def _run_state(self, run_id: str) -> m.RunStateName:
        """Told to the worker on each start and renewal: ``cancelling`` means stop."""
        return cast(m.RunStateName, str((await self._c.runs.get(RunId(run_id))).state))

    async def vm_finish(self, req: b.VmFinish) -> b.VmTaskReply:
        current_actor().require_service("finishing a VM task")
        result = VmResult(
            run_id=RunId(req.run_id),
            vm_id=req.vm_id,
            attempt=req.attempt,
            outcome=VmTaskState(req.outcome),
            code=req.code,
            message=req.message,
            failed_disks=tuple(req.failed_disks),
            will_retry=req.will_retry,
            worker_id=req.worker_id,
        )
        done = await self._c.run_tasks.finish(result)
        state = None if done.run_state is None else cast(m.RunStateName, str(done.run_state))
        return b.VmTaskReply(task=bw.task_info(done.task), applied=done.applied, run_state=state)

    # --- disk versions and backup sets ----------------------------------------------
    async def disk_commit(self, req: b.DiskCommit) -> b.DiskCommitReply:
        current_actor().require_service("committing a disk version")
        version = DiskVersion(
            id="",
            backup_set_id="",
            disk_id=req.disk_id,
            manifest_name=req.manifest_name,
            manifest_version=req.manifest_version,
            size_bytes=req.size_bytes,
            stats=req.stats,
            snapshot_name=req.snapshot_name,
            snapshot_kept=req.snapshot_kept,
            committed_at=req.taken_at,
        )
        stored, applied = await self._c.backup_sets.commit_disk(
            DiskCommitRequest(
                run_id=RunId(req.run_id),
                vm_id=req.vm_id,
                backup_type=req.backup_type,
                taken_at=req.taken_at,
                base_backup_set_id=req.base_backup_set_id,
                version=version,
                worker_id=req.worker_id,
            )
        )
        return b.DiskCommitReply(disk_version=bw.disk_version_info(stored), applied=applied)

    async def backup_set_get(self, req: b.BackupSetGet) -> b.BackupSetWithDisks:
        found = await self._c.backup_sets.get(req.backup_set_id)
        disks = await self._c.backup_sets.disks(found.id)
        return b.BackupSetWithDisks(
            backup_set=bw.backup_set_info(found), disks=[bw.disk_version_info(d) for d in disks]
        )

    async def backup_set_list(self, req: b.BackupSetList) -> b.BackupSetListReply:
        found, after = await self._c.backup_sets.find(
            run_id=None if req.run_id is None else RunId(req.run_id),
            vm_id=req.vm_id,
            job_id=None if req.job_id is None else JobId(req.job_id),
            limit=req.limit,
            complete=req.complete,
            scope=await jobs_visible_to(self._c.jobs, current_actor()),
            after=req.after,
        )
        sets = [bw.backup_set_info(s) for s in found]
        return b.BackupSetListReply(backup_sets=sets, next_after=after)

    async def backup_set_base(self, req: b.BackupSetBaseGet) -> b.BackupSetWithDisks:
        found = await self._c.backup_sets.base(
            vm_id=req.vm_id, job_id=JobId(req.job_id), pool=req.pool, for_type=req.for_type
        )
        if found is None:
            return b.BackupSetWithDisks()
        return await self.backup_set_get(b.BackupSetGet(actor=req.actor, backup_set_id=found.id))

    # --- leases ---------------------------------------------------------------------
    async def lease_acquire(self, req: b.LeaseAcquire) -> b.LeaseReply:
        current_actor().require_service("taking a lease")
        lease = await self._c.leases.acquire(req.scope, req.holder, req.limit, req.ttl_s)
        return bw.lease_reply(lease)

    async def lease_renew(self, req: b.LeaseRenew) -> b.LeaseReply:
        current_actor().require_service("renewing a lease")
        return bw.lease_reply(
            await self._c.leases.renew(req.scope, req.slot, req.holder, req.ttl_s)
        )

    async def lease_release(self, req: b.LeaseRelease) -> m.Done:
        current_actor().require_service("releasing a lease")
        released = await self._c.leases.release(req.scope, req.slot, req.holder)
        return m.Done(ok=released)
