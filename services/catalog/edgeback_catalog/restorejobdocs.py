"""The restore job as the catalog holds it (collection ``restore_jobs``): its domain
value, its document, its wire view, and what a restore of a job must find before it is
queued (its job enabled, no other restore of the job queued or running)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from edgeback_catalog.documents import utc
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restorestate import BUSY
from edgeback_core.errors import JobDisabledError, NotFoundError, RestoreJobBusyError
from edgeback_core.messages import restorejobs as rj
from edgeback_core.messages import restores as r

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreJob:
    id: str
    revision: int
    enabled: bool
    spec: r.RestoreSpec
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def host_id(self) -> str:
        return self.spec.options.host_id


def spec_fields(spec: r.RestoreSpec) -> dict[str, Any]:
    """The fields an edit replaces: the spec and what is queried of it."""
    return {"spec": msgspec.to_builtins(spec), "name": spec.name, "host_id": spec.options.host_id}


def restore_job_doc(job: RestoreJob) -> dict[str, Any]:
    return {
        "_id": job.id,
        "revision": job.revision,
        "enabled": job.enabled,
        **spec_fields(job.spec),
        "created_by": job.created_by,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def restore_job_of(doc: dict[str, Any]) -> RestoreJob:
    return RestoreJob(
        id=doc["_id"],
        revision=int(doc["revision"]),
        enabled=bool(doc["enabled"]),
        spec=msgspec.convert(doc["spec"], r.RestoreSpec),
        created_by=doc["created_by"],
        created_at=utc(doc["created_at"]),
        updated_at=utc(doc["updated_at"]),
    )


def restore_job_info(job: RestoreJob) -> rj.RestoreJobInfo:
    return rj.RestoreJobInfo(
        id=job.id,
        name=job.spec.name,
        revision=job.revision,
        enabled=job.enabled,
        spec=job.spec,
        created_by=job.created_by,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


async def require_idle(db: CatalogDb, job_id: str, *, besides: str = "") -> None:
    """``restore_job_busy`` while a restore of the job (but ``besides``) is queued,
    running or cancelling."""
    query = {"job_id": job_id, "state": {"$in": sorted(BUSY)}, "_id": {"$ne": besides}}
    busy = sorted(doc["_id"] for doc in await db.find(Coll.RESTORES, query, limit=5))
    if busy:
        raise RestoreJobBusyError(
            f"restore job {job_id} has a restore queued or running: {', '.join(busy)}",
            job_id=job_id,
            restores=busy,
        )


async def require_ready(db: CatalogDb, job_id: str, restore_id: str) -> None:
    """A restore of job ``job_id`` may be verified or run: the job still exists and is
    enabled, and none of its other restores is queued or running."""
    doc = await db.find_one(Coll.RESTORE_JOBS, {"_id": job_id})
    if doc is None:
        raise NotFoundError(f"restore job {job_id} was deleted", job_id=job_id)
    if not doc["enabled"]:
        raise JobDisabledError(f"restore job {job_id} is disabled", job_id=job_id)
    await require_idle(db, job_id, besides=restore_id)


async def queued_first(db: CatalogDb, job_id: str) -> str | None:
    """Of the job's restores queued, running or cancelling, the one queued first (by
    ``queued_at``, then id; one without is older than any): the one a race keeps."""
    query = {"job_id": job_id, "state": {"$in": sorted(BUSY)}}
    docs = await db.find(Coll.RESTORES, query)
    if not docs:
        return None
    first = min(docs, key=lambda d: (utc(d.get("queued_at") or _EPOCH), d["_id"]))
    return str(first["_id"])


async def disabled_jobs(db: CatalogDb, job_ids: Collection[str | None]) -> set[str]:
    """Which of ``job_ids`` are disabled restore jobs."""
    ids = sorted({x for x in job_ids if x is not None})
    if not ids:
        return set()
    docs = await db.find(Coll.RESTORE_JOBS, {"_id": {"$in": ids}, "enabled": False})
    return {doc["_id"] for doc in docs}
