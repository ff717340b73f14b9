"""The VMs of a restore: plan them, start (claim), renew and finish each one, and end
the restore from them (docs/restores.md, "The restore run").

One task per restore point, keyed by (restore, backup set): the restore point's VM
written into its target (the source VM itself on the original path, the new path's VM
otherwise). The tasks follow from the restore as created, so planning twice records
the same list. The steps are ``taskclaims.TaskSteps`` (the backup runs' VM task
machinery: claims a dead worker's successor takes over, conditional updates); a
restore has no VM retries, so each task has one attempt. When the last task ended, the
restore moves to ``vmtaskstate.outcome_of`` its VMs (``cancelled`` while cancelling,
unless every VM had succeeded), which announces ``RestoreFinished`` (``restoreends``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from edgeback_catalog.domain import Clock
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.restoredocs import Restore
from edgeback_catalog.restores import Restores
from edgeback_catalog.restorestate import RestoreState
from edgeback_catalog.taskclaims import Finish, TaskSteps
from edgeback_catalog.vmtaskstate import VmTaskState, outcome_of, run_over
from edgeback_core.errors import InvalidTransitionError, NotFoundError
from edgeback_core.ids import derived_id
from edgeback_core.messages import restores as r
from edgeback_core.messages.runs import VmRef

_ONE_ATTEMPT = 1
_ENDABLE = frozenset({RestoreState.RUNNING, RestoreState.CANCELLING})
_INFO_FIELDS = frozenset(r.RestoreVmInfo.__struct_fields__)


def restore_task_id(restore_id: str, backup_set_id: str) -> str:
    return derived_id("restore_vm_task", restore_id, backup_set_id)


def planned_docs(restore: Restore) -> list[Doc]:
    """One pending task document per restore point of ``restore``."""
    new_path = restore.spec.target.new_path
    docs = []
    for point in restore.points:
        target = point.vm
        if new_path is not None:
            target = VmRef(platform_id=new_path.platform_id, vm_id=new_path.vm_id)
        docs.append(
            {
                "_id": restore_task_id(restore.id, point.backup_set_id),
                "restore_id": restore.id,
                "backup_set_id": point.backup_set_id,
                "source_vm": msgspec.to_builtins(point.vm),
                "target_vm": msgspec.to_builtins(target),
                "disks": msgspec.to_builtins(new_path.disks if new_path else []),
                "state": str(VmTaskState.PENDING),
                "attempt": 1,
                "code": "",
                "message": "",
                "worker_id": "",
                "started_at": None,
                "finished_at": None,
                "claimed_until": None,
                "retrying": False,
                "results": [],
            }
        )
    return docs


def vm_info(doc: Doc) -> r.RestoreVmInfo:
    return msgspec.convert({k: v for k, v in doc.items() if k in _INFO_FIELDS}, r.RestoreVmInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class VmStep:
    task: r.RestoreVmInfo
    applied: bool
    restore_state: RestoreState


class RestoreTasks:
    def __init__(self, db: CatalogDb, restores: Restores, clock: Clock) -> None:
        self._db, self._restores = db, restores
        self._steps = TaskSteps(db, Coll.RESTORE_VM_TASKS, clock, r.RESTORE_VM_REFUSALS)

    async def plan(self, restore_id: str) -> list[r.RestoreVmInfo]:
        """A pending task per restore point; tasks planned before stay as they are."""
        for doc in planned_docs(await self._restore(restore_id)):
            fields = {k: v for k, v in doc.items() if k != "_id"}
            await self._db.upsert(
                Coll.RESTORE_VM_TASKS, {"_id": doc["_id"]}, {"$setOnInsert": fields}
            )
        return await self.tasks(restore_id)

    async def tasks(self, restore_id: str) -> list[r.RestoreVmInfo]:
        return [vm_info(doc) for doc in await self._docs(restore_id)]

    async def start(self, req: r.RestoreVmStart) -> VmStep:
        async def read() -> Doc:
            found = await self._task_doc(req.restore_id, req.backup_set_id)
            if found is None:
                await self.plan(req.restore_id)
                found = await self._require(req.restore_id, req.backup_set_id)
            return found

        doc, applied = await self._steps.start(
            read, req.attempt, req.worker_id, req.claim_s, _ONE_ATTEMPT
        )
        return VmStep(task=vm_info(doc), applied=applied, restore_state=await self._state(req))

    async def renew(self, req: r.RestoreVmRenew) -> VmStep:
        task_id = restore_task_id(req.restore_id, req.backup_set_id)
        doc = await self._steps.renew(task_id, req.attempt, req.worker_id, req.claim_s)
        return VmStep(task=vm_info(doc), applied=True, restore_state=await self._state(req))

    async def finish(self, req: r.RestoreVmFinish) -> VmStep:
        async def read() -> Doc:
            return await self._require(req.restore_id, req.backup_set_id)

        result = Finish(
            attempt=req.attempt, outcome=VmTaskState(req.outcome), code=req.code,
            message=req.message, fields=_result_fields(req), worker_id=req.worker_id,
        )  # fmt: skip
        doc, applied = await self._steps.finish(read, result)
        state = await self._end_if_over(req.restore_id)
        return VmStep(task=vm_info(doc), applied=applied, restore_state=state)

    async def _end_if_over(self, restore_id: str) -> RestoreState:
        """End the restore when its last VM ended (each finisher checks after its own
        write, so the last of concurrent finishers sees every VM ended). A repeated
        finish of an ended restore announces it if that was missed."""
        docs = await self._docs(restore_id)
        restore = await self._restore(restore_id)
        if restore.state not in _ENDABLE:
            await self._restores.ended(restore)
            return restore.state
        states = [VmTaskState(d["state"]) for d in docs]
        if not run_over((s, False) for s in states):
            return restore.state
        cancelling = restore.state is RestoreState.CANCELLING
        target = RestoreState(outcome_of(states, cancelling=cancelling))
        try:
            return (await self._restores.transition(restore_id, target, _counts(states))).state
        except InvalidTransitionError:  # ended meanwhile (a cancel)
            return (await self._restore(restore_id)).state

    async def _state(self, req: r.RestoreVmClaim) -> RestoreState:
        return (await self._restore(req.restore_id)).state

    async def _restore(self, restore_id: str) -> Restore:
        return await self._restores.by_id(restore_id)

    async def _docs(self, restore_id: str) -> list[Doc]:
        return await self._db.find(
            Coll.RESTORE_VM_TASKS, {"restore_id": restore_id}, sort=(("backup_set_id", 1),)
        )

    async def _task_doc(self, restore_id: str, backup_set_id: str) -> Doc | None:
        task_id = restore_task_id(restore_id, backup_set_id)
        return await self._db.find_one(Coll.RESTORE_VM_TASKS, {"_id": task_id})

    async def _require(self, restore_id: str, backup_set_id: str) -> Doc:
        found = await self._task_doc(restore_id, backup_set_id)
        if found is None:
            raise NotFoundError(
                f"backup set {backup_set_id} is not a restore point of restore {restore_id}"
            )
        return found


def _result_fields(req: r.RestoreVmFinish) -> dict[str, Any]:
    return {
        "rolled_back": list(req.rolled_back),
        "refusals": msgspec.to_builtins(req.refusals),
        "stats": msgspec.to_builtins(req.stats),
        "snapshot_id": req.snapshot_id,
        "vm_started": req.vm_started,
    }


def _counts(states: Sequence[VmTaskState]) -> str:
    return ",".join(f"{s}={sum(x is s for x in states)}" for s in VmTaskState if s in states)
