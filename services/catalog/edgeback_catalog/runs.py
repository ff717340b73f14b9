"""Runs and their state machine, applied to MongoDB without lost or double transitions.

A transition is checked by ``runstate`` against the run as read, then written with
one conditional ``find_one_and_update`` whose filter repeats what was checked: the
version read, a state the target may be entered from, and that this request id was
never applied. The same update pushes the step onto the run's history, so state and
history change together atomically. A writer that loses a race re-reads and decides
again; a redelivered request (same request id) is answered without a second step.
Each applied step is then copied to ``run_events`` (idempotently, keyed by sequence)
for queries across runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edgeback_catalog.access import AuditLog, new_id
from edgeback_catalog.documents import RunDoc, run_of, transition_doc, transition_of
from edgeback_catalog.domain import Actor, Clock, JobId, Run, RunId, RunTransition
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restoredocs import newest_page, position
from edgeback_catalog.runstate import (
    INITIAL,
    TERMINAL,
    RunState,
    allowed_from,
    check_transition,
)
from edgeback_core.errors import LockBusyError, NotFoundError, StaleVersionError
from edgeback_core.ids import BackupHostId

_MAX_ATTEMPTS = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionRequest:
    run_id: RunId
    target: RunState
    request_id: str
    reason: str = ""
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionOutcome:
    run: Run
    applied: bool  # False: this request id had already been applied (a redelivery)


OnEnd = Callable[[RunId], Awaitable[object]]


class Runs:
    def __init__(
        self, db: CatalogDb, audit: AuditLog, clock: Clock, *, on_end: OnEnd | None = None
    ) -> None:
        """``on_end`` runs after a step into a terminal state, and again when a repeated
        request finds the run ended (``RunEnds.announce``: it acts once per run)."""
        self._db, self._audit, self._clock, self._on_end = db, audit, clock, on_end

    async def create(
        self, actor: Actor, job_id: JobId, host_id: BackupHostId, run_id: RunId | None = None
    ) -> Run:
        """A new run in the initial state, with that state as the first history step."""
        now = self._clock()
        rid = run_id or RunId(new_id())
        first = RunTransition(
            seq=0, from_state=None, to_state=INITIAL, request_id=f"create:{rid}", reason="", at=now
        )
        doc = RunDoc(
            _id=rid,
            job_id=job_id,
            host_id=host_id,
            state=str(INITIAL),
            version=0,
            created_at=now,
            updated_at=now,
            history=[transition_doc(first)],
        )
        await self._db.insert(Coll.RUNS, doc)
        await self._record_event(rid, first)
        await self._audit.record(actor, "run.created", f"run/{rid}", {"job_id": job_id})
        return run_of(dict(doc))

    async def record_first_step(self, run_id: RunId, doc: RunDoc) -> None:
        """Copy the first history step of a run inserted elsewhere (``runstart.py``)."""
        await self._record_event(run_id, transition_of(dict(doc["history"][0])))

    async def get(self, run_id: RunId) -> Run:
        doc = await self._db.find_one(Coll.RUNS, {"_id": run_id})
        if doc is None:
            raise NotFoundError(f"run {run_id} not found", run_id=run_id)
        return run_of(doc)

    async def page(
        self, query: dict[str, Any], *, after: str | None, limit: int
    ) -> tuple[list[Run], str | None]:
        """The runs matching ``query``, newest first: one page and the position to pass
        as ``after`` for the next one (None: the last page)."""
        docs = await newest_page(
            self._db, Coll.RUNS, query, time_field="created_at", after=after, limit=limit
        )
        runs = [run_of(doc) for doc in docs[:limit]]
        last = runs[-1] if len(docs) > limit else None
        return runs, (None if last is None else position(last.created_at, last.id))

    async def active_of(self, job_id: JobId, states: frozenset[RunState]) -> list[Run]:
        """The runs of ``job_id`` now in one of ``states``, oldest first."""
        query = {"job_id": job_id, "state": {"$in": sorted(states)}}
        docs = await self._db.find(Coll.RUNS, query, sort=(("created_at", 1), ("_id", 1)))
        return [run_of(doc) for doc in docs]

    async def transition(self, request: TransitionRequest) -> TransitionOutcome:
        for _ in range(_MAX_ATTEMPTS):
            run = await self.get(request.run_id)
            if any(step.request_id == request.request_id for step in run.history):
                await self.ended(run)
                return TransitionOutcome(run=run, applied=False)
            if request.expected_version not in (None, run.version):
                raise StaleVersionError(
                    f"run {run.id} is at version {run.version}, not {request.expected_version}",
                    version=run.version,
                )
            check_transition(run.state, request.target)
            after = await self._apply(run, request)
            if after is not None:
                await self.ended(after)
                return TransitionOutcome(run=after, applied=True)
        raise LockBusyError(f"run {request.run_id} kept changing; try again")

    async def ended(self, run: Run) -> None:
        """Tell ``on_end`` about ``run`` if it has ended."""
        if self._on_end is not None and run.state in TERMINAL:
            await self._on_end(run.id)

    async def _apply(self, run: Run, request: TransitionRequest) -> Run | None:
        now = self._clock()
        step = RunTransition(
            seq=run.version + 1,
            from_state=run.state,
            to_state=request.target,
            request_id=request.request_id,
            reason=request.reason,
            at=now,
        )
        condition = {
            "_id": run.id,
            "version": run.version,
            "state": {"$in": sorted(allowed_from(request.target))},
            "history.request_id": {"$ne": request.request_id},
        }
        change = {
            "$set": {"state": str(request.target), "updated_at": now},
            "$inc": {"version": 1},
            "$push": {"history": transition_doc(step)},
        }
        doc = await self._db.update(Coll.RUNS, condition, change)
        if doc is None:
            return None
        await self._record_event(run.id, step)
        if request.target in TERMINAL:  # the job may be deleted again (``jobs.delete``)
            await self._db.update(
                Coll.JOBS, {"_id": run.job_id}, {"$pull": {"active_runs": run.id}}
            )
        return run_of(doc)

    async def _record_event(self, run_id: RunId, step: RunTransition) -> None:
        fields = {"run_id": run_id, **transition_doc(step)}
        await self._db.upsert(
            Coll.RUN_EVENTS, {"_id": f"{run_id}:{step.seq}"}, {"$setOnInsert": fields}
        )

    async def events(self, run_id: RunId) -> list[RunTransition]:
        """The run's steps as copied to ``run_events``, in order."""
        docs = await self._db.find(Coll.RUN_EVENTS, {"run_id": run_id}, sort=(("seq", 1),))
        return [transition_of(doc) for doc in docs]
