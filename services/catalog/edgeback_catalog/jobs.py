"""Backup jobs: create, read, list, edit (optimistically), clone, delete, enable.

Every check (the definition's rules, its references, the caller's rights) runs before
the single write, and every write is audited. An edit names the revision it started
from; the write is conditional on it, so of two concurrent edits one wins and the other
gets ``stale_version``. A job is deleted only while no run of it is active: the
delete is conditional on the job's ``active_runs`` being empty, and starting a run
adds to that list with a conditional update (``runs.py``), so the two cannot cross.

An operator sees a job, and so reads, edits, clones, enables, deletes, starts and stops
it, only while the job's backup host is authorized to one of its groups
(``access.host_scope``, as for restore jobs): an admin taking a group off a host takes
that group's operators off the host's jobs (and their runs and backup sets) at once.
A job's own ``groups`` are recorded as given but grant nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec

from edgeback_catalog.access import (
    NO_ID,
    AuditLog,
    check_name,
    host_scope,
    new_id,
    require_groups,
    visibility,
)
from edgeback_catalog.domain import Actor, Clock, GroupName, Job, JobId
from edgeback_catalog.hosts import BackupHosts
from edgeback_catalog.jobdocs import job_doc, job_of, spec_fields
from edgeback_catalog.jobschedule import due_from, schedule_fields
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.runstate import TERMINAL
from edgeback_core import jobrules
from edgeback_core.errors import (
    InvalidInputError,
    JobBusyError,
    NotFoundError,
    PermissionDeniedError,
    StaleVersionError,
    UnknownReferenceError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages.jobs import JobSpec

MAX_PAGE = 200


class Jobs:
    def __init__(self, db: CatalogDb, audit: AuditLog, hosts: BackupHosts, clock: Clock) -> None:
        self._db, self._audit, self._hosts, self._clock = db, audit, hosts, clock

    async def create(
        self,
        actor: Actor,
        spec: JobSpec,
        *,
        enabled: bool = True,
        groups: Collection[str] | None = None,
    ) -> Job:
        await self._check(actor, spec)
        now = self._clock()
        when = schedule_fields(spec.schedule, anchor=now, enabled=enabled)
        job = Job(
            id=JobId(new_id()),
            revision=1,
            enabled=enabled,
            spec=spec,
            groups=await self._groups_for(actor, groups),
            created_by=actor.name,
            created_at=now,
            updated_at=now,
            **when,
        )
        await self._db.insert(Coll.JOBS, job_doc(job))
        await self._audit.record(actor, "job.created", _ref(job.id), {"name": spec.name})
        return job

    async def get(self, actor: Actor, job_id: JobId) -> Job:
        scope = await host_scope(self._db, actor)
        doc = await self._db.find_one(Coll.JOBS, {"_id": job_id, **scope})
        if doc is None:
            raise NotFoundError(f"job {job_id} not found", job_id=job_id)
        return job_of(doc)

    async def list(
        self,
        actor: Actor,
        *,
        host_id: BackupHostId | None = None,
        after: str | None = None,
        limit: int,
        match: Mapping[str, Any] | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page in name order and the name to continue after (None: last page);
        ``match``: more clauses (``listfilters.job_filters``)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be 1-{MAX_PAGE}", field="limit")
        query = await host_scope(self._db, actor) | dict(match or {})
        if host_id is not None:
            seen = query.get("host_id", {}).get("$in", [host_id])
            query["host_id"] = host_id if host_id in seen else NO_ID  # a host it cannot see
        if after is not None:  # with a name filter: both conditions on the name
            after_clause = {"name": {"$gt": after}}
            query = {"$and": [query, after_clause]} if "name" in query else query | after_clause
        docs = await self._db.find(Coll.JOBS, query, sort=(("name", 1),), limit=limit + 1)
        jobs = [job_of(doc) for doc in docs[:limit]]
        return jobs, (jobs[-1].spec.name if len(docs) > limit else None)

    async def update(self, actor: Actor, job_id: JobId, revision: int, spec: JobSpec) -> Job:
        """Replace the definition if the job is still at ``revision``. A changed schedule
        is anchored anew (now) and its next due time recomputed; other edits keep both."""
        current = await self.get(actor, job_id)
        await self._check(actor, spec)
        now = self._clock()
        fields = {**spec_fields(spec), "updated_at": now}
        if spec.schedule != current.spec.schedule:  # compared at `revision` (the condition)
            fields |= schedule_fields(spec.schedule, anchor=now, enabled=current.enabled)
        condition = {"_id": job_id, "revision": revision}
        change = {"$set": fields, "$inc": {"revision": 1}}
        doc = await self._db.update(Coll.JOBS, condition, change)
        if doc is None:
            current = await self.get(actor, job_id)
            raise StaleVersionError(
                f"job {job_id} is at revision {current.revision}, not {revision}",
                revision=current.revision,
            )
        job = job_of(doc)
        await self._audit.record(actor, "job.updated", _ref(job_id), {"revision": job.revision})
        return job

    async def clone(self, actor: Actor, job_id: JobId, name: str) -> Job:
        """A disabled copy under ``name`` on the same backup host (so seen by the same
        groups); it records the source's groups when an admin clones, the operator's own
        otherwise (an operator may only give a job its own groups)."""
        source = await self.get(actor, job_id)
        spec = msgspec.structs.replace(source.spec, name=name)
        groups = source.groups if actor.sees_everything else None
        copy = await self.create(actor, spec, enabled=False, groups=groups)
        await self._audit.record(actor, "job.cloned", _ref(copy.id), {"from": job_id})
        return copy

    async def set_enabled(self, actor: Actor, job_id: JobId, enabled: bool) -> Job:
        """Enable or disable; a disabled job is never due, an enabled one is due at its
        next slot from now (what fell due while it was off does not fire)."""
        for _ in range(3):  # an edit of the schedule in between: read it again
            job, now = await self.get(actor, job_id), self._clock()
            anchor = job.schedule_anchor or job.created_at
            due = due_from(job.spec.schedule, anchor, now) if enabled else None
            change = {"$set": {"enabled": enabled, "updated_at": now, "next_due": due}}
            condition = {"_id": job_id, "revision": job.revision}
            doc = await self._db.update(Coll.JOBS, condition, change)
            if doc is not None:
                break
        else:
            raise StaleVersionError(f"job {job_id} keeps changing: try again")
        action = "job.enabled" if enabled else "job.disabled"
        await self._audit.record(actor, action, _ref(job_id))
        return job_of(doc)

    async def delete(self, actor: Actor, job_id: JobId) -> None:
        """Delete the job; ``job_busy`` while a run of it is active."""
        job = await self.get(actor, job_id)
        await forget_ended_runs(self._db, job)
        busy = {doc["_id"] for doc in await self._active_runs(job_id)}
        if not busy and await self._db.delete(Coll.JOBS, {"_id": job_id, "active_runs": []}):
            await self._audit.record(actor, "job.deleted", _ref(job_id), {"name": job.spec.name})
            return
        busy |= set((await self.get(actor, job_id)).active_runs)
        raise JobBusyError(f"job {job_id} has active run(s) {sorted(busy)}", runs=sorted(busy))

    async def _active_runs(self, job_id: JobId) -> Sequence[Doc]:
        query = {"job_id": job_id, "state": {"$nin": sorted(TERMINAL)}}
        return await self._db.find(Coll.RUNS, query, limit=5)

    async def _check(self, actor: Actor, spec: JobSpec) -> None:
        """The definition's rules (every problem at once), then its references."""
        found = jobrules.problems(spec)
        try:
            check_name(spec.name)
        except InvalidInputError as exc:
            found.insert(0, f"name: {exc.message}")
        if found:
            raise InvalidInputError("invalid job: " + "; ".join(found), problems=found)
        host = await self._hosts.require_active(BackupHostId(spec.target.host_id))
        if not actor.can_see(host.groups):
            raise UnknownReferenceError(f"backup host {host.id} does not exist", host_id=host.id)
        wanted = {sel.platform_id for sel in spec.content.vms}
        query = {"_id": {"$in": sorted(wanted)}, **visibility(actor)}
        seen = await self._db.find(Coll.PLATFORMS, query)
        missing = sorted(wanted - {doc["_id"] for doc in seen})
        if missing:
            raise UnknownReferenceError(f"unknown platform(s): {missing}", platform_ids=missing)

    async def _groups_for(
        self, actor: Actor, groups: Collection[str] | None
    ) -> frozenset[GroupName]:
        """The job's recorded groups: the creator's by default; an operator only its own
        (they grant no visibility: that follows the backup host)."""
        if groups is None:
            return actor.groups
        checked = await require_groups(self._db, groups)
        if not actor.sees_everything and not checked <= actor.groups:
            raise PermissionDeniedError("an operator can only give a job its own groups")
        return checked


async def forget_ended_runs(db: CatalogDb, job: Job) -> None:
    """Drop runs from the job's ``active_runs`` that ended without being removed (a
    catalog that stopped between a run's last transition and that clean-up)."""
    if not job.active_runs:
        return
    ended = await db.find(
        Coll.RUNS, {"_id": {"$in": list(job.active_runs)}, "state": {"$in": sorted(TERMINAL)}}
    )
    gone = [doc["_id"] for doc in ended]
    if gone:
        await db.update(Coll.JOBS, {"_id": job.id}, {"$pullAll": {"active_runs": gone}})


def _ref(job_id: str) -> str:
    return f"job/{job_id}"
