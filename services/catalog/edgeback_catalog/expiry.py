"""Retention in the catalog: which backup sets of a job expire, and their removal.

A backup set's ``retention_state`` is absent while it is kept; ``plan`` runs the pure
``edgeback_core.retention.select`` over each VM's complete kept sets and marks those it
removes ``expiring`` with one conditional update each (on still being kept and not
protected, so a protection that lands meanwhile wins). From then on the set is no
restore point and no base (:data:`KEPT`, used by those queries). Once the caller has
deleted their manifests on the node, ``confirm`` marks them ``deleted``. Neither state
ever goes back, so a pass interrupted anywhere is finished by the next one: ``plan``
answers every expiring set of the job, not only the new ones.

The inputs ``select`` needs beyond the sets themselves: ``protected`` (a user's flag,
:meth:`Retention.protect`), and what pending work needs, given as protected too: the
base of a backup still running and the points of a restore not yet ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from edgeback_catalog.access import AuditLog
from edgeback_catalog.backupdocs import KEPT
from edgeback_catalog.domain import Actor, Clock, JobId
from edgeback_catalog.jobs import Jobs
from edgeback_catalog.leadership import Leadership
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restorestate import TERMINAL as RESTORE_TERMINAL
from edgeback_catalog.runstate import TERMINAL as RUN_TERMINAL
from edgeback_core.errors import ConflictError, InvalidInputError, NotFoundError
from edgeback_core.messages.jobs import RetentionPolicy
from edgeback_core.messages.scheduling import SCHEDULER_ROLE
from edgeback_core.retention import RestorePoint, Selection, select

EXPIRING: Final = "expiring"
DELETED: Final = "deleted"
RULES: Final = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")
MAX_JOBS_PAGE: Final = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOutcome:
    expiring: list[dict[str, Any]]
    """Every expiring set document of the job, each with its ``disks`` (disk versions)."""
    newly_expiring: int
    kept: int


def zone_of(schedule: object) -> ZoneInfo:
    """The backup host's zone as the job knows it: its schedule's, else UTC."""
    return ZoneInfo(getattr(schedule, "tz", None) or "UTC")


def point_of(doc: dict[str, Any], pending: set[str]) -> RestorePoint:
    return RestorePoint(
        id=doc["_id"],
        taken=doc["taken_at"],
        kind=doc["backup_type"],
        protected=bool(doc.get("protected", False)) or doc["_id"] in pending,
    )


class Retention:
    def __init__(
        self, db: CatalogDb, audit: AuditLog, leadership: Leadership, jobs: Jobs, clock: Clock
    ) -> None:
        self._db, self._audit, self._leadership = db, audit, leadership
        self._jobs, self._clock = jobs, clock

    async def jobs_with_policy(self, after: str, limit: int) -> tuple[list[JobId], bool]:
        """Ids (in id order, after ``after``) of the jobs with at least one rule set."""
        if not 1 <= limit <= MAX_JOBS_PAGE:
            raise InvalidInputError(f"limit must be 1-{MAX_JOBS_PAGE}", field="limit")
        ruled = [{f"spec.options.retention.{rule}": {"$gt": 0}} for rule in RULES]
        query: dict[str, Any] = {"$or": ruled}
        if after:
            query["_id"] = {"$gt": after}
        docs = await self._db.find(Coll.JOBS, query, sort=(("_id", 1),), limit=limit + 1)
        return [JobId(doc["_id"]) for doc in docs[:limit]], len(docs) > limit

    async def plan(self, actor: Actor, job_id: JobId, holder: str, token: int) -> PlanOutcome:
        actor.require_service("applying retention")
        await self._leadership.require(SCHEDULER_ROLE, holder, token)
        job = await self._jobs.get(actor, job_id)
        policy, zone = job.spec.options.retention, zone_of(job.spec.schedule)
        docs = await self._db.find(
            Coll.BACKUP_SETS, {"job_id": job_id, "complete": True, **KEPT}, sort=(("_id", 1),)
        )
        pending = await self._pending(job_id)
        by_vm: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in docs:
            by_vm[doc["vm_id"]].append(doc)
        newly = kept = 0
        for vm_docs in by_vm.values():
            chosen = select([point_of(d, pending) for d in vm_docs], policy, zone)
            kept += len(chosen.keep)
            for doc in (d for d in vm_docs if d["_id"] in chosen.remove):
                newly += await self._expire(actor, doc, chosen, policy, (zone, token))
        return PlanOutcome(expiring=await self.expiring(job_id), newly_expiring=newly, kept=kept)

    async def _pending(self, job_id: JobId) -> set[str]:
        """Sets that pending work needs: bases of running backups, points of restores."""
        partial = await self._db.find(Coll.BACKUP_SETS, {"job_id": job_id, "complete": False})
        run_ids = sorted({d["run_id"] for d in partial if d.get("base_backup_set_id")})
        running = await self._db.find(
            Coll.RUNS, {"_id": {"$in": run_ids}, "state": {"$nin": sorted(RUN_TERMINAL)}}
        )
        live_runs = {doc["_id"] for doc in running}
        bases = {d["base_backup_set_id"] for d in partial if d["run_id"] in live_runs}
        restores = await self._db.find(Coll.RESTORES, {"state": {"$nin": sorted(RESTORE_TERMINAL)}})
        points = {p["backup_set_id"] for doc in restores for p in doc.get("points", [])}
        return bases | points

    async def _expire(
        self,
        actor: Actor,
        doc: dict[str, Any],
        chosen: Selection,
        policy: RetentionPolicy,
        zone_token: tuple[ZoneInfo, int],
    ) -> int:
        zone, token = zone_token
        condition = {"_id": doc["_id"], **KEPT, "protected": {"$ne": True}}
        change = {
            "$set": {"retention_state": EXPIRING, "expiring_at": self._clock(), "fence": token}
        }
        if await self._db.update(Coll.BACKUP_SETS, condition, change) is None:
            return 0  # protected, or expired by another pass, meanwhile
        details = {
            "job_id": doc["job_id"],
            "vm_id": doc["vm_id"],
            "taken_at": doc["taken_at"],
            "backup_type": doc["backup_type"],
            "why": "no rule of the policy keeps it",
            "policy": msgspec.to_builtins(policy),
            "zone": zone.key,
            "kept": {pid: list(reasons) for pid, reasons in chosen.keep.items()},
            "token": token,
        }
        await self._audit.record(actor, "backup_set.expiring", _ref(doc["_id"]), details)
        return 1

    async def expiring(self, job_id: JobId) -> list[dict[str, Any]]:
        docs = await self._db.find(
            Coll.BACKUP_SETS,
            {"job_id": job_id, "retention_state": EXPIRING},
            sort=(("taken_at", 1), ("_id", 1)),
        )
        for doc in docs:
            doc["disks"] = await self._db.find(
                Coll.DISK_VERSIONS, {"backup_set_id": doc["_id"]}, sort=(("disk_id", 1),)
            )
        return docs

    async def confirm(
        self, actor: Actor, holder: str, token: int, set_ids: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """Mark expiring sets deleted: (marked now, deleted before)."""
        actor.require_service("confirming removed restore points")
        await self._leadership.require(SCHEDULER_ROLE, holder, token)
        deleted: list[str] = []
        already: list[str] = []
        for set_id in dict.fromkeys(set_ids):
            change = {"$set": {"retention_state": DELETED, "deleted_at": self._clock()}}
            condition = {"_id": set_id, "retention_state": EXPIRING}
            if await self._db.update(Coll.BACKUP_SETS, condition, change) is not None:
                details = {"token": token}
                await self._audit.record(actor, "backup_set.deleted", _ref(set_id), details)
                deleted.append(set_id)
                continue
            doc = await self._db.find_one(Coll.BACKUP_SETS, {"_id": set_id})
            if doc is None:
                raise NotFoundError(f"backup set {set_id} not found", backup_set_id=set_id)
            if doc.get("retention_state") != DELETED:
                raise ConflictError(f"backup set {set_id} is not expiring", backup_set_id=set_id)
            already.append(set_id)
        return deleted, already

    async def protect(
        self, actor: Actor, set_id: str, protected: bool, reason: str
    ) -> tuple[dict[str, Any], bool]:
        """Set the flag (whoever sees the set's job); the set and whether it changed."""
        doc = await self._db.find_one(Coll.BACKUP_SETS, {"_id": set_id})
        if doc is None:
            raise NotFoundError(f"backup set {set_id} not found", backup_set_id=set_id)
        await self._jobs.get(actor, JobId(doc["job_id"]))  # not_found unless visible
        if bool(doc.get("protected", False)) == protected:
            return doc, False
        condition: dict[str, Any] = {"_id": set_id, "protected": {"$ne": protected}}
        if protected:
            condition |= KEPT  # an expiring set is already on its way out
        change = {"$set": {"protected": protected}}
        updated = await self._db.update(Coll.BACKUP_SETS, condition, change)
        if updated is None:
            raise ConflictError(
                f"backup set {set_id} is {doc.get('retention_state', 'changing')}: "
                "it cannot be protected",
                backup_set_id=set_id,
            )
        action = "backup_set.protected" if protected else "backup_set.unprotected"
        await self._audit.record(actor, action, _ref(set_id), {"reason": reason})
        return updated, True


def _ref(set_id: str) -> str:
    return f"backup_sets/{set_id}"
