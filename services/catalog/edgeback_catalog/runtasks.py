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
from datetime import datetime, timedelta
from typing import Any

import msgspec

from edgeback_catalog.backupdocs import new_task_doc, task_id, task_of
from edgeback_catalog.backupsets import BackupSets
from edgeback_catalog.domain import Clock, RunId, VmTask
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.runs import Runs, TransitionOutcome, TransitionRequest
from edgeback_catalog.runstate import RunState
from edgeback_catalog.vmtaskstate import (
    UNFINISHED,
    Claim,
    TaskPoint,
    VmTaskState,
    allowed_from,
    claim,
    decide_finish,
    decide_start,
    run_outcome,
    run_over,
)
from edgeback_core.errors import (
    ConflictError,
    InvalidInputError,
    InvalidTransitionError,
    LeaseLostError,
    LockBusyError,
    NotFoundError,
)
from edgeback_core.messages.backups import FailedDisk
from edgeback_core.messages.runs import VmRef

_MAX_ATTEMPTS = 20
_ENDABLE = frozenset({RunState.RUNNING, RunState.CANCELLING})


@dataclass(frozen=True, slots=True, kw_only=True)
class VmResult:
    run_id: RunId
    vm_id: str
    attempt: int
    outcome: VmTaskState
    code: str = ""
    message: str = ""
    failed_disks: tuple[FailedDisk, ...] = ()
    will_retry: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    task: VmTask
    applied: bool
    run_state: RunState | None = None  # after a finish


def _point(task: VmTask) -> TaskPoint:
    return TaskPoint(state=task.state, attempt=task.attempt, code=task.code, results=task.results)


class RunTasks:
    def __init__(self, db: CatalogDb, runs: Runs, sets: BackupSets, clock: Clock) -> None:
        self._db, self._runs, self._sets, self._clock = db, runs, sets, clock

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

    async def start(
        self, run_id: RunId, vm: VmRef, attempt: int, worker_id: str, claim_s: float
    ) -> TaskOutcome:
        run = await self._run_doc(run_id)
        max_attempts = int(run.get("vm_retries", 0)) + 1
        for _ in range(_MAX_ATTEMPTS):
            task = await self._task(run_id, vm.vm_id) or (await self.plan(run_id, [vm]))[0]
            now = self._clock()
            until = now + timedelta(seconds=claim_s)
            if not decide_start(_point(task), attempt, max_attempts):
                if task.state is not VmTaskState.RUNNING or task.attempt != attempt:
                    return TaskOutcome(task=task, applied=False)
                verdict = claim(task.worker_id, task.claimed_until, worker_id, now)
                if verdict is Claim.HELD:
                    return TaskOutcome(task=task, applied=False)
                doc = await self._reclaim(task, worker_id, until)
                if doc is not None:
                    return TaskOutcome(task=task_of(doc), applied=verdict is Claim.TAKE_OVER)
                continue
            change = {
                "$set": {
                    "state": str(VmTaskState.RUNNING),
                    "attempt": attempt,
                    "worker_id": worker_id,
                    "claimed_until": until,
                    "retrying": False,
                    "started_at": now,
                    "finished_at": None,
                    "code": "",
                    "message": "",
                }
            }
            doc = await self._conditional(task, VmTaskState.RUNNING, change)
            if doc is not None:
                return TaskOutcome(task=task_of(doc), applied=True)
        raise LockBusyError(f"VM task {run_id}/{vm.vm_id} kept changing; try again")

    async def _reclaim(self, task: VmTask, worker_id: str, until: datetime) -> Doc | None:
        """Claim a running attempt for ``worker_id`` if nobody changed it since it was read."""
        condition = {
            "_id": task_id(task.run_id, task.vm.vm_id),
            "attempt": task.attempt,
            "state": str(VmTaskState.RUNNING),
            "worker_id": task.worker_id,
        }
        change = {"$set": {"worker_id": worker_id, "claimed_until": until}}
        return await self._db.update(Coll.VM_TASKS, condition, change)

    async def renew(
        self, run_id: RunId, vm_id: str, attempt: int, worker_id: str, claim_s: float
    ) -> VmTask:
        condition = {
            "_id": task_id(run_id, vm_id),
            "attempt": attempt,
            "state": str(VmTaskState.RUNNING),
            "worker_id": worker_id,
        }
        until = self._clock() + timedelta(seconds=claim_s)
        doc = await self._db.update(Coll.VM_TASKS, condition, {"$set": {"claimed_until": until}})
        if doc is None:
            raise LeaseLostError(f"{worker_id} no longer holds VM {vm_id} of run {run_id}")
        return task_of(doc)

    async def finish(self, result: VmResult) -> TaskOutcome:
        for _ in range(_MAX_ATTEMPTS):
            task = await self._task(result.run_id, result.vm_id)
            if task is None:
                raise NotFoundError(f"VM {result.vm_id} is not part of run {result.run_id}")
            if not decide_finish(_point(task), result.attempt, result.outcome, result.code):
                await self._complete_set(task)  # a repeat: finish what a crash interrupted
                await self._runs.ended(await self._runs.get(result.run_id))
                return TaskOutcome(task=task, applied=False)
            doc = await self._conditional(task, result.outcome, self._finish_change(result))
            if doc is not None:
                await self._complete_set(task_of(doc))
                state = await self._end_run_if_over(result.run_id)
                return TaskOutcome(task=task_of(doc), applied=True, run_state=state)
        raise LockBusyError(f"VM task {result.run_id}/{result.vm_id} kept changing; try again")

    async def _complete_set(self, task: VmTask) -> None:
        """A succeeded VM's backup set becomes a restore point (before the run can end)."""
        if task.state is VmTaskState.SUCCEEDED:
            await self._sets.complete(task.run_id, task.vm.vm_id)

    async def _end_run_if_over(self, run_id: RunId) -> RunState:
        """End the run when its last VM ended (each finisher checks after its own write,
        so the last of concurrent finishers always sees every VM ended)."""
        tasks = await self.tasks(run_id)
        run = await self._runs.get(run_id)
        if run.state not in _ENDABLE or not run_over((t.state, t.retrying) for t in tasks):
            return run.state
        request = TransitionRequest(
            run_id=run_id,
            target=run_outcome(
                (t.state for t in tasks), cancelling=run.state is RunState.CANCELLING
            ),
            request_id=f"vms-ended:{run_id}",
            reason=_counts(tasks),
        )
        try:
            return (await self._runs.transition(request)).run.state
        except InvalidTransitionError:  # ended meanwhile by someone else (cancel, finish)
            return (await self._runs.get(run_id)).state

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
                "retrying": result.will_retry and result.outcome is VmTaskState.FAILED,
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
        run = await self._runs.get(run_id)
        target = run_outcome((t.state for t in tasks), cancelling=run.state is RunState.CANCELLING)
        return await self._runs.transition(
            TransitionRequest(
                run_id=run_id, target=target, request_id=request_id, reason=_counts(tasks)
            )
        )

    async def _task(self, run_id: RunId, vm_id: str) -> VmTask | None:
        doc = await self._db.find_one(Coll.VM_TASKS, {"_id": task_id(run_id, vm_id)})
        return None if doc is None else task_of(doc)

    async def _run_doc(self, run_id: RunId) -> dict[str, Any]:
        doc = await self._db.find_one(Coll.RUNS, {"_id": run_id})
        if doc is None:
            raise NotFoundError(f"run {run_id} not found", run_id=run_id)
        return doc


def _counts(tasks: Sequence[VmTask]) -> str:
    return ",".join(f"{s}={sum(t.state is s for t in tasks)}" for s in VmTaskState)
