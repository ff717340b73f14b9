"""MongoDB documents of jobs and their conversion to domain values.

A job document keeps the fields the catalog queries and enforces on (name, host,
platforms, groups, revision, active runs) as its own top-level fields, and the user's
definition whole under ``spec`` with ``spec_version``: a definition is a user's
document that must read back exactly as saved, and a future reshaping of it is a
migration guarded by ``spec_version``. The schedule's state (``schedule_anchor``,
``next_due``, ``last_due``, ``last_fired``, see ``jobschedule.py``) and ``fence_token``
(the highest scheduler fencing token that marked a fire of the job) are top-level too:
``next_due`` is what the scheduler's one indexed query reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

import msgspec

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import GroupName, Job, JobId, RunId
from edgeback_core.messages.jobs import JobSpec

SPEC_VERSION = 1


class JobDoc(TypedDict):
    _id: str
    name: str
    enabled: bool
    revision: int
    host_id: str
    platform_ids: list[str]
    groups: list[str]
    active_runs: list[str]
    spec_version: int
    spec: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    schedule_anchor: datetime | None
    next_due: datetime | None
    last_due: datetime | None
    last_fired: datetime | None
    fence_token: int


def spec_fields(spec: JobSpec) -> dict[str, Any]:
    """What changes in a job document when its definition changes."""
    return {
        "name": spec.name,
        "host_id": spec.target.host_id,
        "platform_ids": sorted({sel.platform_id for sel in spec.content.vms}),
        "spec_version": SPEC_VERSION,
        "spec": msgspec.to_builtins(spec),
    }


def job_doc(job: Job) -> JobDoc:
    fields = spec_fields(job.spec)
    return JobDoc(
        _id=job.id,
        name=fields["name"],
        enabled=job.enabled,
        revision=job.revision,
        host_id=fields["host_id"],
        platform_ids=fields["platform_ids"],
        groups=sorted(job.groups),
        active_runs=list(job.active_runs),
        spec_version=SPEC_VERSION,
        spec=fields["spec"],
        created_by=job.created_by,
        created_at=job.created_at,
        updated_at=job.updated_at,
        schedule_anchor=job.schedule_anchor,
        next_due=job.next_due,
        last_due=job.last_due,
        last_fired=job.last_fired,
        fence_token=0,
    )


def job_of(doc: dict[str, Any]) -> Job:
    return Job(
        id=JobId(doc["_id"]),
        revision=int(doc["revision"]),
        enabled=bool(doc["enabled"]),
        spec=msgspec.convert(doc["spec"], JobSpec),
        groups=frozenset(GroupName(g) for g in doc.get("groups", [])),
        created_by=doc.get("created_by", ""),
        created_at=utc(doc["created_at"]),
        updated_at=utc(doc["updated_at"]),
        active_runs=tuple(RunId(r) for r in doc.get("active_runs", [])),
        schedule_anchor=_maybe_utc(doc.get("schedule_anchor")),
        next_due=_maybe_utc(doc.get("next_due")),
        last_due=_maybe_utc(doc.get("last_due")),
        last_fired=_maybe_utc(doc.get("last_fired")),
    )


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)
