"""Conversions between run-task, backup-set and lease values and their wire structs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import msgspec

from edgeback_catalog.domain import BackupSet, DiskVersion, VmTask
from edgeback_catalog.leases import Lease
from edgeback_core.messages import backups as b
from edgeback_core.messages.runs import BackupType, DiskStats


def task_info(task: VmTask) -> b.VmTaskInfo:
    return b.VmTaskInfo(
        run_id=task.run_id,
        vm=task.vm,
        state=cast(b.VmTaskStateName, str(task.state)),
        attempt=task.attempt,
        code=task.code,
        message=task.message,
        worker_id=task.worker_id,
        started_at=task.started_at,
        finished_at=task.finished_at,
        failed_disks=list(task.failed_disks),
        backup_set_id=task.backup_set_id,
        claimed_until=task.claimed_until,
        retrying=task.retrying,
    )


def disk_version_info(version: DiskVersion) -> b.DiskVersionInfo:
    return b.DiskVersionInfo(
        id=version.id,
        backup_set_id=version.backup_set_id,
        disk_id=version.disk_id,
        manifest_name=version.manifest_name,
        manifest_version=version.manifest_version,
        size_bytes=version.size_bytes,
        stats=version.stats,
        snapshot_name=version.snapshot_name,
        snapshot_kept=version.snapshot_kept,
        committed_at=version.committed_at,
    )


def backup_set_info(found: BackupSet) -> b.BackupSetInfo:
    return b.BackupSetInfo(
        id=found.id,
        run_id=found.run_id,
        job_id=found.job_id,
        vm=found.vm,
        backup_type=cast(BackupType, found.backup_type),
        pool=found.pool,
        taken_at=found.taken_at,
        base_backup_set_id=found.base_backup_set_id,
        complete=found.complete,
        disk_count=found.disk_count,
        created_at=found.created_at,
    )


def lease_reply(lease: Lease | None) -> b.LeaseReply:
    if lease is None:
        return b.LeaseReply()
    info = b.LeaseInfo(
        scope=lease.scope, slot=lease.slot, holder=lease.holder, expires_at=lease.expires_at
    )
    return b.LeaseReply(lease=info)


def total_stats(disks: Sequence[DiskVersion]) -> DiskStats:
    """The sum of the disk versions' stats (a run's totals)."""
    fields = [f for f in DiskStats.__struct_fields__]
    sums = {f: sum(getattr(d.stats, f) for d in disks) for f in fields}
    return msgspec.convert(sums, DiskStats)
