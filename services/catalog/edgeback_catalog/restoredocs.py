"""The restore as the catalog holds it: its domain value, its MongoDB document, and the
restore points (complete backup sets with their disks) it is made of."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgspec

from edgeback_catalog.access import NO_ID, host_scope
from edgeback_catalog.backupdocs import KEPT, backup_set_of, disk_version_of
from edgeback_catalog.documents import utc
from edgeback_catalog.domain import Actor
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restorecodes import Verification
from edgeback_catalog.restorestate import RestoreState
from edgeback_core.errors import InvalidInputError, InvalidRestoreError
from edgeback_core.messages import restores as r
from edgeback_core.restorerules import PointSummary


@dataclass(frozen=True, slots=True, kw_only=True)
class Restore:
    id: str
    state: RestoreState
    version: int
    spec: r.RestoreSpec
    points: tuple[r.RestorePoint, ...]
    verification: Verification
    created_by: str
    created_at: datetime
    updated_at: datetime
    reason: str = ""
    due_at: datetime | None = None
    """Schedule ``once``: the instant the scheduler queues it at (``restorequeue``)."""
    job_id: str | None = None
    """The restore job it was made from (``restorejobs``), None for a one-off."""

    @property
    def host_id(self) -> str:
        return self.spec.options.host_id


def restore_doc(restore: Restore) -> dict[str, Any]:
    v = restore.verification
    return {
        "_id": restore.id,
        "state": str(restore.state),
        "version": restore.version,
        "spec": msgspec.to_builtins(restore.spec),
        "points": msgspec.to_builtins(list(restore.points)),
        "verification": {
            "code_hash": v.code_hash,
            "request_hash": v.request_hash,
            "expires_at": v.expires_at,
            "used_at": v.used_at,
        },
        "created_by": restore.created_by,
        "created_at": restore.created_at,
        "updated_at": restore.updated_at,
        "reason": restore.reason,
        "due_at": restore.due_at,
        "job_id": restore.job_id,
        "fence_token": 0,
        "history": [],
    }


def restore_of(doc: dict[str, Any]) -> Restore:
    v = doc["verification"]
    used = v.get("used_at")
    return Restore(
        id=doc["_id"],
        state=RestoreState(doc["state"]),
        version=int(doc["version"]),
        spec=msgspec.convert(doc["spec"], r.RestoreSpec),
        points=tuple(msgspec.convert(doc["points"], list[r.RestorePoint])),
        verification=Verification(
            code_hash=v["code_hash"],
            request_hash=v["request_hash"],
            expires_at=utc(v["expires_at"]),
            used_at=None if used is None else utc(used),
        ),
        created_by=doc["created_by"],
        created_at=utc(doc["created_at"]),
        updated_at=utc(doc["updated_at"]),
        reason=doc.get("reason", ""),
        due_at=None if doc.get("due_at") is None else utc(doc["due_at"]),
        job_id=doc.get("job_id"),
    )


def restore_info(restore: Restore, vms: list[r.RestoreVmInfo] | None = None) -> r.RestoreInfo:
    pending = restore.state is RestoreState.PENDING_VERIFICATION
    return r.RestoreInfo(
        id=restore.id,
        state=cast(r.RestoreStateName, str(restore.state)),
        version=restore.version,
        spec=restore.spec,
        points=list(restore.points),
        created_by=restore.created_by,
        created_at=restore.created_at,
        updated_at=restore.updated_at,
        code_expires_at=restore.verification.expires_at if pending else None,
        reason=restore.reason,
        due_at=restore.due_at,
        job_id=restore.job_id,
        vms=vms or [],
    )


def summary_of(point: r.RestorePoint) -> PointSummary:
    return PointSummary(
        backup_set_id=point.backup_set_id,
        vm_id=point.vm.vm_id,
        platform_id=point.vm.platform_id,
        disks=tuple(point.disks),
    )


async def point_of(db: CatalogDb, set_doc: dict[str, Any]) -> r.RestorePoint:
    found = backup_set_of(set_doc)
    disk_docs = await db.find(
        Coll.DISK_VERSIONS, {"backup_set_id": found.id}, sort=(("disk_id", 1),)
    )
    disks = [disk_version_of(d) for d in disk_docs]
    return r.RestorePoint(
        backup_set_id=found.id,
        vm=found.vm,
        backup_type=found.backup_type,
        pool=found.pool,
        taken_at=found.taken_at,
        disks=[
            r.PointDisk(
                disk_id=d.disk_id,
                size_bytes=d.size_bytes,
                manifest_name=d.manifest_name,
                manifest_version=d.manifest_version,
            )
            for d in disks
        ],
    )


async def restore_points(
    db: CatalogDb, set_ids: list[str], visible: dict[str, Any] | None = None
) -> list[r.RestorePoint]:
    """The complete backup sets named (of those ``visible``, a :func:`sets_visible_to`
    clause), in the order named; the others are refused alike, seen or not."""
    query = {"_id": {"$in": set_ids}, "complete": True, **KEPT, **(visible or {})}
    docs = await db.find(Coll.BACKUP_SETS, query)
    by_id = {doc["_id"]: doc for doc in docs}
    missing = [s for s in set_ids if s not in by_id]
    if missing:
        raise InvalidRestoreError(
            f"not a restore point (a complete backup set): {', '.join(missing)}",
            codes=[r.POINT_NOT_RESTORABLE],
            problems=[f"backup_set_ids: {s} is not a restore point" for s in missing],
        )
    return [await point_of(db, by_id[s]) for s in dict.fromkeys(set_ids)]


async def browse(
    db: CatalogDb, actor: Actor, query: r.RestorePointsQuery
) -> tuple[list[r.RestorePoint], str | None]:
    """Restore points newest first, by VM, pool and time (S1), of the jobs ``actor``
    sees; one page and the next one's cursor (None: the last page)."""
    filters: dict[str, Any] = {"complete": True, **KEPT, **await sets_visible_to(db, actor)}
    if query.vm_id is not None:
        filters["vm_id"] = query.vm_id
    if query.vm:
        part = {"$regex": re.escape(query.vm), "$options": "i"}
        filters["$or"] = [{"vm.name": part}, {"vm_id": part}]
    if query.pool is not None:
        filters["pool.name"] = query.pool.name
        if query.pool.node_url:  # empty: that pool name on any storage node
            filters["pool.node_url"] = query.pool.node_url
    taken: dict[str, datetime] = {}
    if query.taken_after is not None:
        taken["$gte"] = query.taken_after
    if query.taken_before is not None:
        taken["$lt"] = query.taken_before
    if taken:
        filters["taken_at"] = taken
    limit = max(1, min(query.limit, 1000))
    docs = await newest_page(
        db, Coll.BACKUP_SETS, filters, time_field="taken_at", after=query.after, limit=limit
    )
    points = [await point_of(db, doc) for doc in docs[:limit]]
    more = len(docs) > limit
    return points, (position(points[-1].taken_at, points[-1].backup_set_id) if more else None)


async def sets_visible_to(db: CatalogDb, actor: Actor) -> dict[str, Any]:
    """The clause keeping the backup sets of the jobs ``actor`` sees (as runs are seen:
    jobs whose backup host is authorized to one of its groups); admins see every set,
    imported ones too."""
    if actor.sees_everything:
        return {}
    jobs = await db.find(Coll.JOBS, await host_scope(db, actor))
    return {"job_id": {"$in": sorted(doc["_id"] for doc in jobs) or [NO_ID]}}


# --- pages newest first, by (time, id) --------------------------------------------
def position(at: datetime, item_id: str) -> str:
    """The cursor after an item: its time and id (``next_after``, given back as ``after``)."""
    return f"{utc(at).isoformat()}|{item_id}"


async def newest_page(
    db: CatalogDb,
    coll: Coll,
    filters: dict[str, Any],
    *,
    time_field: str,
    after: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to ``limit + 1`` documents newest first (ties by id) past the cursor ``after``:
    one more than asked tells whether another page follows."""
    query = dict(filters)
    if after is not None:
        at, item_id = _cursor(after)
        older = {"$or": [{time_field: {"$lt": at}}, {time_field: at, "_id": {"$gt": item_id}}]}
        query = {"$and": [query, older]}
    sort = ((time_field, -1), ("_id", 1))
    return await db.find(coll, query, sort=sort, limit=limit + 1)


def _cursor(after: str) -> tuple[datetime, str]:
    at, sep, item_id = after.partition("|")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        moment = None
    if not sep or not item_id or moment is None or moment.tzinfo is None:
        raise InvalidInputError("after is not a cursor this catalog gave", field="after")
    return moment, item_id
