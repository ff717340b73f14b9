"""Restore jobs (issue 11): a named, saved restore definition that makes restores.

A job is its ``RestoreSpec`` (its ``name`` names the job, unique among restore jobs),
checked like a restore at every save (``Restores.check``: the points the caller may
restore, an active backup host it sees, a target platform it sees). An operator sees
the restore jobs whose backup host is authorized to one of its groups; admins all.

Every restore of a job is a restore as any other (``restores.py``) with ``job_id`` set,
confirmed by its own verification code, which is bound to the spec it was made from.
So whatever changes the spec (edit, delete) first refuses while a restore of the job
is queued or running (``restore_job_busy``), then cancels the job's restores still
waiting for their code or their time; starting the job again cancels the ones still
waiting for their code (superseded). A restore of a job is verified, run by hand or
queued by the scheduler only while its job exists and is enabled, and verified or run
only while no other restore of the job is queued or running (``restorejobdocs``).
Every change is audited.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from edgeback_catalog.access import AuditLog, check_name, host_scope, new_id
from edgeback_catalog.domain import Actor, Clock
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restoredocs import Restore, restore_of
from edgeback_catalog.restorejobdocs import (
    RestoreJob,
    require_idle,
    restore_job_doc,
    restore_job_of,
    spec_fields,
)
from edgeback_catalog.restores import RESTORE_HOST, Created, Restores
from edgeback_catalog.restorestate import (
    BUSY,
    WAITING,
    RestoreState,
    cancel_target,
)
from edgeback_core.errors import (
    InvalidInputError,
    InvalidTransitionError,
    JobDisabledError,
    NotFoundError,
    StaleVersionError,
)
from edgeback_core.messages import restorejobs as rj
from edgeback_core.messages import restores as r

RECENT = 50
_STALE = WAITING | {RestoreState.QUEUED}


class RestoreJobs:
    def __init__(self, db: CatalogDb, audit: AuditLog, restores: Restores, clock: Clock) -> None:
        self._db, self._audit, self._restores, self._clock = db, audit, restores, clock

    async def create(self, actor: Actor, spec: r.RestoreSpec) -> tuple[RestoreJob, Created]:
        """Save the job and make its first restore (its code in ``Created``)."""
        job = await self._save(actor, spec, enabled=True)
        return job, await self._restores.create(actor, spec, job_id=job.id)

    async def _save(self, actor: Actor, spec: r.RestoreSpec, *, enabled: bool) -> RestoreJob:
        await self._check(actor, spec)
        now = self._clock()
        job = RestoreJob(
            id=new_id(),
            revision=1,
            enabled=enabled,
            spec=spec,
            created_by=actor.name,
            created_at=now,
            updated_at=now,
        )
        await self._db.insert(Coll.RESTORE_JOBS, restore_job_doc(job))
        await self._audit.record(actor, "restore_job.created", _ref(job.id), {"name": spec.name})
        return job

    async def get(self, actor: Actor, job_id: str) -> RestoreJob:
        query = {"_id": job_id, **await self._visible(actor)}
        doc = await self._db.find_one(Coll.RESTORE_JOBS, query)
        if doc is None:
            raise NotFoundError(f"restore job {job_id} not found", job_id=job_id)
        return restore_job_of(doc)

    async def restores_of(self, actor: Actor, job_id: str, limit: int = RECENT) -> list[Restore]:
        """The job's most recent restores ``actor`` sees, newest first (one made before
        an edit moved the job to another backup host is seen as that host is)."""
        scope = await host_scope(self._db, actor, RESTORE_HOST)
        docs = await self._db.find(
            Coll.RESTORES,
            {"job_id": job_id, **scope},
            sort=(("created_at", -1), ("_id", 1)),
            limit=limit,
        )
        return [restore_of(doc) for doc in docs]

    async def page(
        self, actor: Actor, req: rj.RestoreJobList
    ) -> tuple[list[RestoreJob], str | None]:
        """One page by name and the name to continue after (None: the last page)."""
        if not 1 <= req.limit <= rj.MAX_PAGE:
            raise InvalidInputError(f"limit must be 1-{rj.MAX_PAGE}", field="limit")
        query: dict[str, Any] = await self._visible(actor)
        if req.host_id is not None:
            seen = query.get("host_id", {}).get("$in", [req.host_id])
            query["host_id"] = req.host_id if req.host_id in seen else {"$in": []}
        if req.enabled is not None:
            query["enabled"] = req.enabled
        names: dict[str, Any] = {}
        if req.name:
            names |= {"$regex": re.escape(req.name), "$options": "i"}
        if req.after is not None:
            names["$gt"] = req.after
        if names:
            query["name"] = names
        docs = await self._db.find(
            Coll.RESTORE_JOBS, query, sort=(("name", 1),), limit=req.limit + 1
        )
        jobs = [restore_job_of(doc) for doc in docs[: req.limit]]
        return jobs, (jobs[-1].spec.name if len(docs) > req.limit else None)

    async def update(
        self, actor: Actor, job_id: str, revision: int, spec: r.RestoreSpec
    ) -> tuple[RestoreJob, list[str]]:
        """Replace the spec if the job is at ``revision`` and idle; if what a restore
        does changed (anything but the name), the restores still waiting (bound to the
        old spec) are cancelled and named."""
        current = await self.get(actor, job_id)
        await self._check(actor, spec)
        await require_idle(self._db, job_id)
        condition = {"_id": job_id, "revision": revision}
        change = {
            "$set": {**spec_fields(spec), "updated_at": self._clock()},
            "$inc": {"revision": 1},
        }
        doc = await self._db.update(Coll.RESTORE_JOBS, condition, change)
        if doc is None:
            now_at = (await self.get(actor, job_id)).revision
            raise StaleVersionError(
                f"restore job {job_id} is at revision {now_at}, not {revision}", revision=now_at
            )
        cancelled = []
        if _unnamed(spec) != _unnamed(current.spec):  # at `revision`: the update's condition
            # QUEUED too: one verified between the idle check and the edit ran the old spec
            cancelled = await self._cancel(actor, job_id, _STALE, "its restore job was edited")
        details = {"revision": doc["revision"], "cancelled": cancelled}
        await self._audit.record(actor, "restore_job.updated", _ref(job_id), details)
        return restore_job_of(doc), cancelled

    async def clone(self, actor: Actor, job_id: str, name: str) -> RestoreJob:
        """A copy under ``name`` (same spec, same enabled state), no restore made."""
        source = await self.get(actor, job_id)
        spec = msgspec.structs.replace(source.spec, name=name)
        copy = await self._save(actor, spec, enabled=source.enabled)
        await self._audit.record(actor, "restore_job.cloned", _ref(copy.id), {"from": job_id})
        return copy

    async def delete(self, actor: Actor, job_id: str) -> tuple[RestoreJob, list[str]]:
        """Delete an idle job, then cancel its restores still waiting (and any verified
        between the idle check and the delete; after it, verifying fails ``not_found``)."""
        job = await self.get(actor, job_id)
        await require_idle(self._db, job_id)
        await self._db.delete(Coll.RESTORE_JOBS, {"_id": job_id})
        cancelled = await self._cancel(actor, job_id, _STALE, "its restore job was deleted")
        details = {"name": job.spec.name, "cancelled": cancelled}
        await self._audit.record(actor, "restore_job.deleted", _ref(job_id), details)
        return job, cancelled

    async def set_enabled(self, actor: Actor, job_id: str, enabled: bool) -> RestoreJob:
        """A disabled job makes no restore, and its restores are neither verified, run
        nor queued by the scheduler (they wait, scheduled, until it is enabled)."""
        await self.get(actor, job_id)
        change = {"$set": {"enabled": enabled, "updated_at": self._clock()}}
        doc = await self._db.update(Coll.RESTORE_JOBS, {"_id": job_id}, change)
        if doc is None:
            raise NotFoundError(f"restore job {job_id} not found", job_id=job_id)
        action = "restore_job.enabled" if enabled else "restore_job.disabled"
        await self._audit.record(actor, action, _ref(job_id))
        return restore_job_of(doc)

    async def start(self, actor: Actor, job_id: str) -> tuple[RestoreJob, Created, list[str]]:
        """A new restore of the job's spec with its own code; the job's restores still
        waiting for their code are superseded (cancelled, named)."""
        job = await self.get(actor, job_id)
        if not job.enabled:
            raise JobDisabledError(f"restore job {job_id} is disabled", job_id=job_id)
        await require_idle(self._db, job_id)
        await self._restores.check(actor, job.spec)  # refused: nothing superseded
        pending = frozenset({RestoreState.PENDING_VERIFICATION})
        superseded = await self._cancel(actor, job_id, pending, "superseded by a new start")
        created = await self._restores.create(actor, job.spec, job_id=job_id)
        details = {"restore_id": created.restore.id, "cancelled": superseded}
        await self._audit.record(actor, "restore_job.started", _ref(job_id), details)
        return job, created, superseded

    async def stop(self, actor: Actor, job_id: str) -> list[Restore]:
        """Cancel the job's queued or running restores, as ``restore stop`` does."""
        await self.get(actor, job_id)
        stopped = await self._cancel(actor, job_id, BUSY - {RestoreState.CANCELLING}, "stopped")
        await self._audit.record(actor, "restore_job.stopped", _ref(job_id), {"restores": stopped})
        return [await self._restores.by_id(x) for x in stopped]

    async def _cancel(
        self, actor: Actor, job_id: str, states: frozenset[RestoreState], why: str
    ) -> list[str]:
        """Cancel the job's restores in ``states`` (each by its own conditional
        transition: one that moved on meanwhile is cancelled from where it is, or left
        if it ended); their ids."""
        query = {"job_id": job_id, "state": {"$in": sorted(states)}}
        done = []
        for doc in await self._db.find(Coll.RESTORES, query, sort=(("_id", 1),)):
            try:
                moved = await self._restores.transition(
                    doc["_id"], cancel_target(RestoreState(doc["state"])), f"{why} by {actor.name}"
                )
            except InvalidTransitionError:
                continue  # it ended meanwhile
            done.append(moved.id)
            await self._audit.record(
                actor, "restore.cancelled", f"restore/{moved.id}", {"why": why}
            )
        return done

    async def _check(self, actor: Actor, spec: r.RestoreSpec) -> None:
        try:
            check_name(spec.name)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"a restore job needs a name: {exc.message}", field="name"
            ) from exc
        await self._restores.check(actor, spec)

    async def _visible(self, actor: Actor) -> dict[str, Any]:
        """Jobs whose backup host is authorized to one of the actor's groups."""
        return await host_scope(self._db, actor)


def _unnamed(spec: r.RestoreSpec) -> r.RestoreSpec:
    return msgspec.structs.replace(spec, name="")


def _ref(job_id: str) -> str:
    return f"restore_job/{job_id}"
