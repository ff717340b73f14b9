"""The VMs of a run: plan them, start and finish each attempt, end the run from them.

Each step is decided by ``vmtaskstate`` on the task as read, then written with one
conditional update whose filter repeats what was decided (state, attempt), so two
workers racing on one task cannot both apply a step; the loser re-reads and is
answered as a repetition or refused. A VM task is keyed by (run, VM): see
``backupdocs.task_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from edgeback_catalog.backupdocs import new_task_doc, task_id, task_of
from edgeback_catalog.domain import Clock, RunId, VmTask
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.runs import Runs, TransitionOutcome, TransitionRequest
from edgeback_catalog.vmtaskstate import (
    UNFINISHED,
    TaskPoint,
    VmTaskState,
    allowed_from,
    decide_finish,
    decide_start,
    run_outcome,
)
from edgeback_core.errors import ConflictError, InvalidInputError, LockBusyError, NotFoundError
from edgeback_core.messages.backups import FailedDisk
from edgeback_core.messages.runs import VmRef

_MAX_ATTEMPTS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class VmResult:
    run_id: RunId
    vm_id: str
    attempt: int
    outcome: VmTaskState
    code: str = ""
    message: str = ""
    failed_disks: tuple[FailedDisk, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    task: VmTask
    applied: bool


def _point(task: VmTask) -> TaskPoint:
    return TaskPoint(state=task.state, attempt=task.attempt, code=task.code, results=task.results)


class RunTasks:
    def __init__(self, db: CatalogDb, runs: Runs, clock: Clock) -> None:
        self._db, self._runs, self._clock = db, runs, clock

    async def plan(self, run_id: RunId, vms: Sequence[VmRef]) -> list[VmTask]:
        """A pending task per VM; VMs planned before keep their task as it is."""
        run = await self._run_doc(run_id)
        if len({vm.vm_id for vm in vms}) != len(vms):
            raise InvalidInputError("a VM is listed twice")
        for vm in vms:
            doc = new_task_doc(run_id, run["job_id"], vm)
            fields = {k: v for k, v in doc.items() if k != "_id"}
            await self._db.upsert(Coll.VM_TASKS, {"_id": doc["_id"]}, {"$setOnInsert": fields})
        return await self.tasks(run_id)

    async def tasks(self, run_id: RunId) -> list[VmTask]:
        docs = await self._db.find(Coll.VM_TASKS, {"run_id": run_id}, sort=(("vm_id", 1),))
        return [task_of(doc) for doc in docs]

    async def start(self, run_id: RunId, vm: VmRef, attempt: int, worker_id: str) -> TaskOutcome:
        run = await self._run_doc(run_id)
        max_attempts = int(run.get("vm_retries", 0)) + 1
        for _ in range(_MAX_ATTEMPTS):
            task = await self._task(run_id, vm.vm_id) or (await self.plan(run_id, [vm]))[0]
            if not decide_start(_point(task), attempt, max_attempts):
                return TaskOutcome(task=task, applied=False)
            change = {
                "$set": {
                    "state": str(VmTaskState.RUNNING),
                    "attempt": attempt,
                    "worker_id": worker_id,
                    "started_at": self._clock(),
                    "finished_at": None,
                    "code": "",
                    "message": "",
                }
            }
            doc = await self._conditional(task, VmTaskState.RUNNING, change)
            if doc is not None:
                return TaskOutcome(task=task_of(doc), applied=True)
        raise LockBusyError(f"VM task {run_id}/{vm.vm_id} kept changing; try again")

    async def finish(self, result: VmResult) -> TaskOutcome:
        for _ in range(_MAX_ATTEMPTS):
            task = await self._task(result.run_id, result.vm_id)
            if task is None:
                raise NotFoundError(f"VM {result.vm_id} is not part of run {result.run_id}")
            if not decide_finish(_point(task), result.attempt, result.outcome, result.code):
                return TaskOutcome(task=task, applied=False)
            doc = await self._conditional(task, result.outcome, self._finish_change(result))
            if doc is not None:
                return TaskOutcome(task=task_of(doc), applied=True)
        raise LockBusyError(f"VM task {result.run_id}/{result.vm_id} kept changing; try again")

    def _finish_change(self, result: VmResult) -> dict[str, Any]:
        now = self._clock()
        record = {
            "attempt": result.attempt,
            "state": str(result.outcome),
            "code": result.code,
            "at": now,
        }
        return {
            "$set": {
                "state": str(result.outcome),
                "code": result.code,
                "message": result.message[:2000],
                "finished_at": now,
                "failed_disks": [msgspec.to_builtins(d) for d in result.failed_disks],
            },
            "$push": {"results": record},
        }

    async def _conditional(
        self, task: VmTask, target: VmTaskState, change: dict[str, Any]
    ) -> dict[str, Any] | None:
        if task.state not in allowed_from(target):  # decided before: never written
            raise ConflictError(f"a VM {task.state} cannot become {target}")
        # the state and attempt read: a concurrent step makes this match nothing
        condition = {
            "_id": task_id(task.run_id, task.vm.vm_id),
            "attempt": task.attempt,
            "state": str(task.state),
        }
        return await self._db.update(Coll.VM_TASKS, condition, change)

    async def finish_run(
        self, run_id: RunId, request_id: str, *, abandon_unfinished: bool = False
    ) -> TransitionOutcome:
        """End the run with the state its VMs give (``vmtaskstate.run_outcome``)."""
        tasks = await self.tasks(run_id)
        open_ = [t.vm.vm_id for t in tasks if t.state in UNFINISHED]
        if open_ and not abandon_unfinished:
            raise ConflictError(f"run {run_id} still has unfinished VMs: {open_[:10]}")
        target = run_outcome(t.state for t in tasks)
        reason = ",".join(f"{s}={sum(t.state is s for t in tasks)}" for s in VmTaskState)
        return await self._runs.transition(
            TransitionRequest(run_id=run_id, target=target, request_id=request_id, reason=reason)
        )

    async def _task(self, run_id: RunId, vm_id: str) -> VmTask | None:
        doc = await self._db.find_one(Coll.VM_TASKS, {"_id": task_id(run_id, vm_id)})
        return None if doc is None else task_of(doc)

    async def _run_doc(self, run_id: RunId) -> dict[str, Any]:
        doc = await self._db.find_one(Coll.RUNS, {"_id": run_id})
        if doc is None:
            raise NotFoundError(f"run {run_id} not found", run_id=run_id)
        return doc
