"""The VMs of a run: plan them, start and finish each attempt, end the run from them.

The steps of a task (claim, renew, finish; decided by ``vmtaskstate``, written with
conditional updates) are ``taskclaims.TaskSteps``, shared with restores. A VM task is
keyed by (run, VM): see ``backupdocs.task_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from edgeback_catalog.backupdocs import new_task_doc, task_id, task_of
from edgeback_catalog.backupsets import BackupSets
from edgeback_catalog.domain import Clock, RunId, VmTask
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.runs import Runs, TransitionOutcome, TransitionRequest
from edgeback_catalog.runstate import RunState
from edgeback_catalog.taskclaims import Finish, TaskSteps
from edgeback_catalog.vmtaskstate import (
    UNFINISHED,
    VmTaskState,
    run_outcome,
    run_over,
)
from edgeback_core.errors import (
    ConflictError,
    InvalidInputError,
    InvalidTransitionError,
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
    worker_id: str = ""
    """Set: only the worker holding the running attempt's claim may finish it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    task: VmTask
    applied: bool
    run_state: RunState | None = None  # after a finish


class RunTasks:
    def __init__(self, db: CatalogDb, runs: Runs, sets: BackupSets, clock: Clock) -> None:
        self._db, self._runs, self._sets, self._clock = db, runs, sets, clock
        self._steps = TaskSteps(db, Coll.VM_TASKS, clock)

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

        async def read() -> Doc:
            found = await self._task_doc(run_id, vm.vm_id)
            if found is None:
                await self.plan(run_id, [vm])
                found = await self._task_doc(run_id, vm.vm_id)
            assert found is not None
            return found

        doc, applied = await self._steps.start(read, attempt, worker_id, claim_s, max_attempts)
        return TaskOutcome(task=task_of(doc), applied=applied)

    async def renew(
        self, run_id: RunId, vm_id: str, attempt: int, worker_id: str, claim_s: float
    ) -> VmTask:
        return task_of(await self._steps.renew(task_id(run_id, vm_id), attempt, worker_id, claim_s))

    async def finish(self, result: VmResult) -> TaskOutcome:
        async def read() -> Doc:
            found = await self._task_doc(result.run_id, result.vm_id)
            if found is None:
                raise NotFoundError(f"VM {result.vm_id} is not part of run {result.run_id}")
            return found

        failed_disks = [msgspec.to_builtins(d) for d in result.failed_disks]
        finish = Finish(
            attempt=result.attempt, outcome=result.outcome, code=result.code,
            message=result.message, will_retry=result.will_retry,
            fields={"failed_disks": failed_disks}, worker_id=result.worker_id,
        )  # fmt: skip
        doc, applied = await self._steps.finish(read, finish)
        task = task_of(doc)
        await self._complete_set(task)  # on a repeat: finish what a crash interrupted
        if not applied:
            await self._runs.ended(await self._runs.get(result.run_id))
            return TaskOutcome(task=task, applied=False)
        state = await self._end_run_if_over(result.run_id)
        return TaskOutcome(task=task, applied=True, run_state=state)

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

    async def _task_doc(self, run_id: RunId, vm_id: str) -> Doc | None:
        return await self._db.find_one(Coll.VM_TASKS, {"_id": task_id(run_id, vm_id)})

    async def _run_doc(self, run_id: RunId) -> dict[str, Any]:
        doc = await self._db.find_one(Coll.RUNS, {"_id": run_id})
        if doc is None:
            raise NotFoundError(f"run {run_id} not found", run_id=run_id)
        return doc


def _counts(tasks: Sequence[VmTask]) -> str:
    return ",".join(f"{s}={sum(t.state is s for t in tasks)}" for s in VmTaskState)
