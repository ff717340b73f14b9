"""Starting a run of a job, once per idempotency key.

The run id is derived from (job id, idempotency key), so a repeated ``StartRun`` finds
the run it created. The run is added to the job's ``active_runs`` by a conditional
update on the job being enabled and idle (the same list ``jobs.delete`` requires
empty), before the run is inserted: a job never overlaps itself, and a job deleted or
disabled meanwhile starts nothing. The run keeps
what its tasks need from the job as it was at the start (revision, type, pool, VM
retries), so an edit during the run does not change it.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from edgeback_catalog.access import AuditLog, host_scope
from edgeback_catalog.documents import RunDoc, run_of, transition_doc
from edgeback_catalog.domain import Actor, Clock, JobId, Run, RunId, RunTransition
from edgeback_catalog.jobdocs import job_of
from edgeback_catalog.jobs import forget_ended_runs
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.runs import Runs
from edgeback_catalog.runstate import INITIAL
from edgeback_core.errors import (
    AlreadyExistsError,
    InvalidInputError,
    JobBusyError,
    JobDisabledError,
    NotFoundError,
)
from edgeback_core.ids import BackupHostId, started_run_id
from edgeback_core.messages.jobs import PoolRef


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRequest:
    job_id: JobId
    requested_by: str
    idempotency_key: str
    backup_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    run: Run
    applied: bool  # False: the run of this key existed already
    job_revision: int
    backup_type: str
    pool: PoolRef


def started_of(doc: Doc, applied: bool) -> Started:
    return Started(
        run=run_of(doc),
        applied=applied,
        job_revision=int(doc["job_revision"]),
        backup_type=doc["backup_type"],
        pool=msgspec.convert(doc["pool"], PoolRef),
    )


def run_id_for(job_id: JobId, idempotency_key: str) -> RunId:
    """The id of the run a ``StartRun`` of ``job_id`` with this key creates."""
    return RunId(started_run_id(job_id, idempotency_key))


class RunStarter:
    def __init__(self, db: CatalogDb, audit: AuditLog, runs: Runs, clock: Clock) -> None:
        self._db, self._audit, self._runs, self._clock = db, audit, runs, clock

    async def start(self, actor: Actor, request: StartRequest) -> Started:
        if not 1 <= len(request.idempotency_key) <= 200:
            raise InvalidInputError("idempotency_key: 1-200 characters")
        rid = run_id_for(request.job_id, request.idempotency_key)
        existing = await self._db.find_one(Coll.RUNS, {"_id": rid})
        if existing is not None:
            return started_of(existing, applied=False)
        job_doc = await self._claim_job(actor, request.job_id, rid)
        doc = self._new_run(rid, job_doc, request)
        try:
            await self._db.insert(Coll.RUNS, doc)
        except AlreadyExistsError:  # the same command, handled concurrently
            return started_of(await self._db.find_one(Coll.RUNS, {"_id": rid}) or {}, False)
        await self._runs.record_first_step(rid, doc)
        details = {"job_id": request.job_id, "requested_by": request.requested_by}
        await self._audit.record(actor, "run.started", f"run/{rid}", details)
        return started_of(dict(doc), applied=True)

    async def _claim_job(self, actor: Actor, job_id: JobId, rid: RunId) -> Doc:
        """Add the run to the job's ``active_runs`` if the job is enabled and idle: a job
        never overlaps itself (``job_busy``), a disabled one starts nothing. A user
        starts only a job whose backup host is authorized to one of its groups (checked
        again by the claim itself)."""
        query = {"_id": job_id, **await host_scope(self._db, actor)}
        found = await self._db.find_one(Coll.JOBS, query)
        if found is None:
            raise NotFoundError(f"job {job_id} not found", job_id=job_id)
        await forget_ended_runs(self._db, job_of(found))
        condition = {**query, "enabled": True, "active_runs": []}
        claimed = await self._db.update(Coll.JOBS, condition, {"$push": {"active_runs": rid}})
        if claimed is not None:
            return claimed
        current = await self._db.find_one(Coll.JOBS, query) or found
        job = job_of(current)
        if rid in job.active_runs:
            # claimed by this same command: a concurrent delivery, or one that stopped
            # before inserting the run; inserting it is safe (the insert is keyed by id)
            return current
        if not job.enabled:
            raise JobDisabledError(f"job {job_id} is disabled", job_id=job_id)
        runs = list(job.active_runs)
        raise JobBusyError(f"job {job_id} is running ({', '.join(runs)})", runs=runs)

    def _new_run(self, rid: RunId, job_doc: Doc, request: StartRequest) -> RunDoc:
        job, now = job_of(job_doc), self._clock()
        backup_type = request.backup_type or job.spec.type
        first = RunTransition(
            seq=0, from_state=None, to_state=INITIAL, request_id=f"create:{rid}", reason="", at=now
        )
        return RunDoc(
            _id=rid,
            job_id=job.id,
            host_id=BackupHostId(job.spec.target.host_id),
            state=str(INITIAL),
            version=0,
            created_at=now,
            updated_at=now,
            history=[transition_doc(first)],
            requested_by=request.requested_by,
            idempotency_key=request.idempotency_key,
            job_revision=job.revision,
            backup_type=backup_type,
            vm_retries=job.spec.options.vm_retries,
            pool=msgspec.to_builtins(job.spec.target.pool),
            backup_set_ids=[],
        )
