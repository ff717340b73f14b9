"""Backup sets and disk versions: what runs produced, and the bases of the next backups.

A VM's backup set is created by its first disk commit and becomes a restore point
(``complete``) when the VM task succeeds; only complete sets serve as bases. A disk
commit is keyed by (run, VM, disk): repeating it with the same manifest answers the
stored version, another manifest under the same key is a conflict. Commits are
accepted only while the VM task runs (a redelivered commit of a finished VM is
answered if it repeats what is stored), and one that names its worker only from the
holder of the task's claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from edgeback_catalog.backupdocs import (
    KEPT,
    backup_set_id,
    backup_set_of,
    disk_version_doc,
    disk_version_id,
    disk_version_of,
    task_id,
    task_of,
)
from edgeback_catalog.domain import BackupSet, Clock, DiskVersion, JobId, RunId
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restoredocs import newest_page, position
from edgeback_catalog.taskclaims import holder_fence
from edgeback_catalog.vmtaskstate import VmTaskState
from edgeback_core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    InvalidTransitionError,
    NameTakenError,
    NotFoundError,
)
from edgeback_core.messages.jobs import PoolRef


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskCommitRequest:
    run_id: RunId
    vm_id: str
    backup_type: str
    taken_at: datetime
    base_backup_set_id: str | None
    version: DiskVersion  # id, backup_set_id and committed_at are filled in here
    worker_id: str = ""
    """Set: accepted only from the worker holding the VM task's claim."""


class BackupSets:
    def __init__(self, db: CatalogDb, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def commit_disk(self, req: DiskCommitRequest) -> tuple[DiskVersion, bool]:
        """The disk version stored for this key, and whether this call stored it."""
        set_id = backup_set_id(req.run_id, req.vm_id)
        version = replace(
            req.version,
            id=disk_version_id(set_id, req.version.disk_id),
            backup_set_id=set_id,
            committed_at=self._clock(),
        )
        stored = await self._db.find_one(Coll.DISK_VERSIONS, {"_id": version.id})
        if stored is not None:
            return _same_or_conflict(disk_version_of(stored), version), False
        task_doc = await self._db.find_one(Coll.VM_TASKS, {"_id": task_id(req.run_id, req.vm_id)})
        if task_doc is None or task_of(task_doc).state is not VmTaskState.RUNNING:
            raise InvalidTransitionError(f"VM {req.vm_id} of run {req.run_id} is not running")
        holder_fence(task_doc, req.worker_id)
        await self._ensure_set(req, set_id, task_doc)
        try:
            await self._db.insert(
                Coll.DISK_VERSIONS, disk_version_doc(version, req.run_id, req.vm_id)
            )
        except (AlreadyExistsError, NameTakenError):  # the same commit, concurrently
            again = await self._db.find_one(Coll.DISK_VERSIONS, {"_id": version.id})
            return _same_or_conflict(disk_version_of(again or {}), version), False
        return version, True

    async def _ensure_set(
        self, req: DiskCommitRequest, set_id: str, task_doc: dict[str, object]
    ) -> None:
        run = await self._db.find_one(Coll.RUNS, {"_id": req.run_id})
        if run is None:
            raise NotFoundError(f"run {req.run_id} not found")
        if req.backup_type not in ("full", "incremental", "cumulative"):
            raise InvalidInputError(f"backup_type {req.backup_type!r} is not a backup type")
        fields = {
            "run_id": req.run_id,
            "job_id": run["job_id"],
            "vm_id": req.vm_id,
            "vm": task_doc["vm"],
            "backup_type": req.backup_type,
            "pool": run.get("pool", {}),
            "taken_at": req.taken_at,
            "base_backup_set_id": req.base_backup_set_id,
            "complete": False,
            "disk_count": 0,
            "created_at": self._clock(),
        }
        await self._db.upsert(Coll.BACKUP_SETS, {"_id": set_id}, {"$setOnInsert": fields})
        await self._db.update(
            Coll.VM_TASKS,
            {"_id": task_id(req.run_id, req.vm_id)},
            {"$set": {"backup_set_id": set_id}},
        )

    async def complete(self, run_id: RunId, vm_id: str) -> BackupSet | None:
        """Make the VM's backup set a restore point (idempotent); None if it has none."""
        set_id = backup_set_id(run_id, vm_id)
        disks = await self._db.count(Coll.DISK_VERSIONS, {"backup_set_id": set_id})
        change = {"$set": {"complete": True, "disk_count": disks}}
        doc = await self._db.update(Coll.BACKUP_SETS, {"_id": set_id}, change)
        if doc is None:
            return None
        await self._db.update(Coll.RUNS, {"_id": run_id}, {"$addToSet": {"backup_set_ids": set_id}})
        return backup_set_of(doc)

    async def get(self, set_id: str) -> BackupSet:
        doc = await self._db.find_one(Coll.BACKUP_SETS, {"_id": set_id})
        if doc is None:
            raise NotFoundError(f"backup set {set_id} not found", backup_set_id=set_id)
        return backup_set_of(doc)

    async def disks(self, set_id: str) -> list[DiskVersion]:
        docs = await self._db.find(
            Coll.DISK_VERSIONS, {"backup_set_id": set_id}, sort=(("disk_id", 1),)
        )
        return [disk_version_of(doc) for doc in docs]

    async def of_run(self, run_id: RunId) -> list[DiskVersion]:
        docs = await self._db.find(Coll.DISK_VERSIONS, {"run_id": run_id})
        return [disk_version_of(doc) for doc in docs]

    async def find(
        self,
        *,
        run_id: RunId | None,
        vm_id: str | None,
        job_id: JobId | None,
        limit: int,
        complete: bool | None = None,
        scope: Mapping[str, Any] | None = None,
        after: str | None = None,
    ) -> tuple[list[BackupSet], str | None]:
        """Newest first: one page of the sets of the run, VM or job (one at least), of
        those ``scope`` keeps (``jobscope``), and the next page's position (None: last)."""
        named = (("run_id", run_id), ("vm_id", vm_id), ("job_id", job_id))
        query: dict[str, Any] = {k: v for k, v in named if v}
        if not query:
            raise InvalidInputError("filter backup sets by run, VM or job")
        if complete is not None:
            query["complete"] = complete
        query |= KEPT
        if scope:  # it may name jobs too: both must hold
            query = {"$and": [query, dict(scope)]}
        limit = max(1, min(limit, 1000))
        docs = await newest_page(
            self._db, Coll.BACKUP_SETS, query, time_field="taken_at", after=after, limit=limit
        )
        found = [backup_set_of(doc) for doc in docs[:limit]]
        last = found[-1] if len(docs) > limit else None
        return found, (None if last is None else position(last.taken_at, last.id))

    async def base(
        self, *, vm_id: str, job_id: JobId, pool: PoolRef, for_type: str
    ) -> BackupSet | None:
        """The newest complete set of the VM by the job in the pool: of any type for an
        incremental, a full for a cumulative."""
        query: dict[str, object] = {
            "vm_id": vm_id,
            "job_id": job_id,
            "pool.node_url": pool.node_url,
            "pool.name": pool.name,
            "complete": True,
            **KEPT,
        }
        if for_type == "cumulative":
            query["backup_type"] = "full"
        docs = await self._db.find(Coll.BACKUP_SETS, query, sort=(("taken_at", -1),), limit=1)
        return backup_set_of(docs[0]) if docs else None


def _same_or_conflict(stored: DiskVersion, wanted: DiskVersion) -> DiskVersion:
    key = ("manifest_name", "manifest_version", "size_bytes", "snapshot_name")
    if any(getattr(stored, k) != getattr(wanted, k) for k in key):
        raise ConflictError(
            f"disk {wanted.disk_id} of backup set {wanted.backup_set_id} is already committed "
            f"as {stored.manifest_name}@{stored.manifest_version}"
        )
    return stored
