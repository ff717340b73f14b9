"""The conditional steps of per-VM tasks, shared by backup runs (``runtasks``) and
restores (``restoretasks``): start an attempt with a claim, renew the claim, finish.

Each step is decided by ``vmtaskstate`` on the task document as read, then written with
one conditional update whose filter repeats what was decided (state, attempt, and for
a claim the holder), so two workers racing on one task cannot both apply a step; the
loser re-reads and is answered as a repetition or refused. A claim whose worker
stopped renewing it (``claimed_until`` passed) is taken over by the next worker that
asks: that worker died, and its task resumes elsewhere. A finish that names its worker
is fenced by the claim: refused with ``lease_lost`` when another worker holds the
running attempt (its first worker lost it while the catalog could not hear it renew).

Works on any collection whose documents carry the task fields: ``state``, ``attempt``,
``worker_id``, ``claimed_until``, ``code``, ``message``, ``results``, ``retrying``,
``started_at``, ``finished_at``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import Clock
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.vmtaskstate import (
    Claim,
    TaskPoint,
    VmTaskState,
    allowed_from,
    claim,
    decide_finish,
    decide_start,
)
from edgeback_core.errors import ConflictError, LeaseLostError, LockBusyError
from edgeback_core.messages.runs import REFUSE_REASONS

_MAX_ATTEMPTS = 20

ReadTask = Callable[[], Awaitable[Doc]]
"""Reads the task's document now (creating it if the kind plans on demand)."""


def point_of(doc: Mapping[str, Any]) -> TaskPoint:
    results = {
        int(r["attempt"]): (VmTaskState(r["state"]), r["code"]) for r in doc.get("results", [])
    }
    return TaskPoint(
        state=VmTaskState(doc["state"]),
        attempt=int(doc["attempt"]),
        code=doc.get("code", ""),
        results=results,
    )


def claimed_until(doc: Mapping[str, Any]) -> datetime | None:
    value = doc.get("claimed_until")
    return None if value is None else utc(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    """The result of one attempt; ``fields``: what the task's kind records beside it."""

    attempt: int
    outcome: VmTaskState
    code: str = ""
    message: str = ""
    will_retry: bool = False
    fields: Mapping[str, Any] | None = None
    worker_id: str = ""
    """Set: a running attempt is finished only by the worker holding its claim."""


@dataclass(frozen=True, slots=True)
class TaskSteps:
    db: CatalogDb
    coll: Coll
    clock: Clock
    refuse_reasons: frozenset[str] = REFUSE_REASONS

    async def start(
        self, read: ReadTask, attempt: int, worker_id: str, claim_s: float, max_attempts: int
    ) -> tuple[Doc, bool]:
        """The task after ``worker_id`` asked to run ``attempt``, and whether that moved
        it (started, or a dead worker's claim taken over). Not moved: a repeat, another
        live worker's claim, or the attempt is over."""
        for _ in range(_MAX_ATTEMPTS):
            doc = await read()
            point = point_of(doc)
            now = self.clock()
            until = now + timedelta(seconds=claim_s)
            if not decide_start(point, attempt, max_attempts):
                if point.state is not VmTaskState.RUNNING or point.attempt != attempt:
                    return doc, False
                verdict = claim(doc.get("worker_id", ""), claimed_until(doc), worker_id, now)
                if verdict is Claim.HELD:
                    return doc, False
                taken = await self._reclaim(doc, worker_id, until)
                if taken is not None:
                    return taken, verdict is Claim.TAKE_OVER
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
            started = await self._conditional(doc, VmTaskState.RUNNING, change)
            if started is not None:
                return started, True
        raise LockBusyError("the task kept changing; try again")

    async def _reclaim(self, doc: Doc, worker_id: str, until: datetime) -> Doc | None:
        """Claim a running attempt for ``worker_id`` if nobody changed it since it was read."""
        condition = {
            "_id": doc["_id"],
            "attempt": doc["attempt"],
            "state": str(VmTaskState.RUNNING),
            "worker_id": doc.get("worker_id", ""),
        }
        change = {"$set": {"worker_id": worker_id, "claimed_until": until}}
        return await self.db.update(self.coll, condition, change)

    async def renew(self, task_id: str, attempt: int, worker_id: str, claim_s: float) -> Doc:
        """Extend ``worker_id``'s claim; ``lease_lost`` when it holds it no longer."""
        condition = {
            "_id": task_id,
            "attempt": attempt,
            "state": str(VmTaskState.RUNNING),
            "worker_id": worker_id,
        }
        until = self.clock() + timedelta(seconds=claim_s)
        doc = await self.db.update(self.coll, condition, {"$set": {"claimed_until": until}})
        if doc is None:
            raise LeaseLostError(f"{worker_id} no longer holds task {task_id}")
        return doc

    async def finish(self, read: ReadTask, result: Finish) -> tuple[Doc, bool]:
        """The task with ``result`` recorded, and whether this call recorded it (False:
        the same result was recorded before)."""
        for _ in range(_MAX_ATTEMPTS):
            doc = await read()
            point = point_of(doc)
            if not decide_finish(
                point, result.attempt, result.outcome, result.code,
                refuse_reasons=self.refuse_reasons,
            ):  # fmt: skip
                return doc, False
            fence = holder_fence(doc, result.worker_id)
            finished = await self._conditional(
                doc, result.outcome, self._finish_change(result), fence
            )
            if finished is not None:
                return finished, True
        raise LockBusyError("the task kept changing; try again")

    def _finish_change(self, result: Finish) -> dict[str, Any]:
        now = self.clock()
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
                **(result.fields or {}),
            },
            "$push": {"results": record},
        }

    async def _conditional(
        self,
        doc: Doc,
        target: VmTaskState,
        change: dict[str, Any],
        fence: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        state = VmTaskState(doc["state"])
        if state not in allowed_from(target):  # decided before: never written
            raise ConflictError(f"a VM {state} cannot become {target}")
        # the state and attempt read: a concurrent step makes this match nothing
        condition = {"_id": doc["_id"], "attempt": doc["attempt"], "state": str(state)}
        return await self.db.update(self.coll, condition | dict(fence or {}), change)


def holder_fence(doc: Mapping[str, Any], worker_id: str) -> dict[str, Any]:
    """The filter that keeps a write to the claim's holder ``worker_id`` (none when it is
    empty or the attempt is not running); ``lease_lost`` if another worker holds it."""
    if not worker_id or doc.get("state") != str(VmTaskState.RUNNING):
        return {}
    if doc.get("worker_id", "") != worker_id:
        raise LeaseLostError(f"{worker_id} no longer holds task {doc['_id']}")
    return {"worker_id": worker_id}
