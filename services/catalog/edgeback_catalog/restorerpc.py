"""The catalog's restore RPCs (``catalog.restore.*``), restore points and pool import,
and the RPCs the workers of the restore's backup host run it with (``catalog.restore.vm.*``,
``catalog.restore.transition``: only the host's broker user, ``principals.RULES``).

Start (immediate), run (manual) and the scheduler's ``catalog.schedule.queue_restores``
(once) queue the verified restore and publish ``PlanRestore`` to the backup host's run
queue (``restorequeue``); if the broker cannot take it, the restore fails with the
publish error's code (its code is spent: the user creates the restore again).
"""

from __future__ import annotations

from typing import cast

from edgeback_catalog.gate import current_actor
from edgeback_catalog.listfilters import event_filters, restore_filters
from edgeback_catalog.restoredocs import browse, restore_info
from edgeback_catalog.restorequeue import RestoreQueue
from edgeback_catalog.restorestate import RestoreState
from edgeback_catalog.restoretasks import VmStep
from edgeback_catalog.routes import Route
from edgeback_catalog.service import Catalog
from edgeback_core.bus.port import Bus
from edgeback_core.messages import restores as r
from edgeback_core.messages import scheduling as s


class RestoreRpc:
    def __init__(self, catalog: Catalog, bus: Bus) -> None:
        self._restores, self._tasks = catalog.restores, catalog.restore_tasks
        self._import, self._log = catalog.pool_import, catalog.run_log
        self._queue = RestoreQueue(
            catalog.restores, catalog.leadership, catalog.audit, bus, catalog.clock
        )

    def routes(self) -> list[Route]:
        return [
            Route(r.RESTORE_CREATE, r.RestoreCreate, self.create),
            Route(r.RESTORE_START, r.RestoreStart, self.start),
            Route(r.RESTORE_GET, r.RestoreGet, self.get),
            Route(r.RESTORE_LIST, r.RestoreList, self.list),
            Route(r.RESTORE_CANCEL, r.RestoreCancel, self.cancel),
            Route(r.RESTORE_RUN, r.RestoreRun, self.run),
            Route(s.SCHEDULE_QUEUE_RESTORES, s.QueueDueRestores, self.queue_due),
            Route(r.RESTORE_POINTS, r.RestorePointsQuery, self.points),
            Route(r.BACKUP_SET_IMPORT, r.BackupSetImport, self.pool_import),
            Route(r.RESTORE_TRANSITION, r.RestoreTransition, self.transition),
            Route(r.RESTORE_VM_PLAN, r.RestoreVmPlan, self.vm_plan),
            Route(r.RESTORE_VM_START, r.RestoreVmStart, self.vm_start),
            Route(r.RESTORE_VM_RENEW, r.RestoreVmRenew, self.vm_renew),
            Route(r.RESTORE_VM_FINISH, r.RestoreVmFinish, self.vm_finish),
            Route(r.RESTORE_EVENTS, r.RestoreEventsGet, self.events),
        ]

    async def create(self, req: r.RestoreCreate) -> r.RestoreCreated:
        created = await self._restores.create(current_actor(), req.spec)
        return r.RestoreCreated(
            restore=restore_info(created.restore), verification_code=created.code
        )

    async def start(self, req: r.RestoreStart) -> r.RestoreInfo:
        actor = current_actor()
        return restore_info(await self._queue.start(actor, req.restore_id, req.verification_code))

    async def run(self, req: r.RestoreRun) -> r.RestoreInfo:
        return restore_info(await self._queue.run(current_actor(), req.restore_id))

    async def queue_due(self, req: s.QueueDueRestores) -> s.QueueDueRestoresReply:
        actor = current_actor()
        actor.require_service("queuing due restores")
        page = await self._queue.queue_due(actor, req)
        return s.QueueDueRestoresReply(restores=page.restores, more=page.more, resent=page.resent)

    async def get(self, req: r.RestoreGet) -> r.RestoreInfo:
        restore = await self._restores.get(current_actor(), req.restore_id)
        return restore_info(restore, vms=await self._tasks.tasks(restore.id))

    async def events(self, req: r.RestoreEventsGet) -> r.RestoreEventsReply:
        restore = await self._restores.get(current_actor(), req.restore_id)
        match = event_filters(req.type, req.since)
        entries, after = await self._log.restore_page(
            restore.id, after=req.after, limit=req.limit, match=match
        )
        found = [
            r.RestoreLogEntry(message_id=e.message_id, received_at=e.received_at, event=e.event)
            for e in entries
        ]
        return r.RestoreEventsReply(events=found, next_after=after)

    async def list(self, req: r.RestoreList) -> r.RestoreListReply:
        found, after = await self._restores.list(
            current_actor(), restore_filters(req), req.limit, req.after
        )
        return r.RestoreListReply(restores=[restore_info(x) for x in found], next_after=after)

    async def cancel(self, req: r.RestoreCancel) -> r.RestoreInfo:
        actor = current_actor()
        return restore_info(await self._restores.cancel(actor, req.restore_id))

    async def points(self, req: r.RestorePointsQuery) -> r.RestorePointsReply:
        points, after = await browse(self._restores.db, current_actor(), req)
        return r.RestorePointsReply(points=points, next_after=after)

    async def pool_import(self, req: r.BackupSetImport) -> r.BackupSetImportReply:
        sets, versions = await self._import.run(current_actor(), req.pool, req.disks)
        return r.BackupSetImportReply(backup_sets_added=sets, disk_versions_added=versions)

    # --- the restore run, by the workers of its backup host -------------------------
    async def transition(self, req: r.RestoreTransition) -> r.RestoreInfo:
        current_actor().require_service("changing a restore's state")
        moved = await self._restores.transition(
            req.restore_id, RestoreState(req.target), req.reason
        )
        return restore_info(moved)

    async def vm_plan(self, req: r.RestoreVmPlan) -> r.RestoreVmPlanReply:
        current_actor().require_service("planning a restore's VMs")
        return r.RestoreVmPlanReply(vms=await self._tasks.plan(req.restore_id))

    async def vm_start(self, req: r.RestoreVmStart) -> r.RestoreVmReply:
        current_actor().require_service("starting a restore's VM")
        return _reply(await self._tasks.start(req))

    async def vm_renew(self, req: r.RestoreVmRenew) -> r.RestoreVmReply:
        current_actor().require_service("renewing a restore's VM")
        return _reply(await self._tasks.renew(req))

    async def vm_finish(self, req: r.RestoreVmFinish) -> r.RestoreVmReply:
        current_actor().require_service("finishing a restore's VM")
        return _reply(await self._tasks.finish(req))


def _reply(step: VmStep) -> r.RestoreVmReply:
    state = cast(r.RestoreStateName, str(step.restore_state))
    return r.RestoreVmReply(task=step.task, applied=step.applied, restore_state=state)
