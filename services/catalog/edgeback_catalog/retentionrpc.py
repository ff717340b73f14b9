"""The catalog RPCs of retention (``catalog.retention.*``, ``catalog.backup_set.protect``;
names and structs: ``edgeback_core.messages.retention``). Plan and confirm need the
``service`` role and the scheduler's fencing token; protecting a backup set needs to
see its job."""

from __future__ import annotations

from typing import Any

import msgspec

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import JobId
from edgeback_catalog.expiry import Retention
from edgeback_catalog.gate import current_actor
from edgeback_catalog.routes import Route
from edgeback_core.messages import retention as rt
from edgeback_core.messages.jobs import PoolRef


class RetentionRpc:
    def __init__(self, retention: Retention) -> None:
        self._retention = retention

    def routes(self) -> list[Route]:
        return [
            Route(rt.RETENTION_JOBS, rt.RetentionJobs, self.jobs),
            Route(rt.RETENTION_PLAN, rt.RetentionPlan, self.plan),
            Route(rt.RETENTION_CONFIRM, rt.RetentionConfirm, self.confirm),
            Route(rt.BACKUP_SET_PROTECT, rt.BackupSetProtect, self.protect),
        ]

    async def jobs(self, req: rt.RetentionJobs) -> rt.RetentionJobsReply:
        current_actor().require_service("listing jobs with retention")
        ids, more = await self._retention.jobs_with_policy(req.after, req.limit)
        return rt.RetentionJobsReply(job_ids=list(ids), more=more)

    async def plan(self, req: rt.RetentionPlan) -> rt.RetentionPlanReply:
        actor = current_actor()
        done = await self._retention.plan(actor, JobId(req.job_id), req.holder, req.token)
        return rt.RetentionPlanReply(
            job_id=req.job_id,
            expiring=[expiring_set(doc) for doc in done.expiring],
            newly_expiring=done.newly_expiring,
            kept=done.kept,
        )

    async def confirm(self, req: rt.RetentionConfirm) -> rt.RetentionConfirmReply:
        actor = current_actor()
        deleted, already = await self._retention.confirm(
            actor, req.holder, req.token, req.backup_set_ids
        )
        return rt.RetentionConfirmReply(deleted=deleted, already=already)

    async def protect(self, req: rt.BackupSetProtect) -> rt.BackupSetProtection:
        actor = current_actor()
        doc, applied = await self._retention.protect(
            actor, req.backup_set_id, req.protected, req.reason
        )
        return rt.BackupSetProtection(
            backup_set_id=doc["_id"],
            protected=bool(doc.get("protected", False)),
            retention_state=doc.get("retention_state", "kept"),
            applied=applied,
        )


def expiring_set(doc: dict[str, Any]) -> rt.ExpiringSet:
    return rt.ExpiringSet(
        backup_set_id=doc["_id"],
        job_id=doc["job_id"],
        vm_id=doc["vm_id"],
        backup_type=doc["backup_type"],
        taken_at=utc(doc["taken_at"]),
        pool=msgspec.convert(doc["pool"], PoolRef),
        manifests=[manifest_ref(d) for d in doc["disks"]],
    )


def manifest_ref(disk: dict[str, Any]) -> rt.ManifestRef:
    """A disk version's manifest: its name is ``<vm>/<disk>`` (the node's path)."""
    vm_id, _, disk_id = str(disk["manifest_name"]).partition("/")
    return rt.ManifestRef(vm_id=vm_id, disk_id=disk_id, version=disk["manifest_version"])
