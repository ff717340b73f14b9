"""MongoDB documents of VM tasks, backup sets and disk versions, and their conversion.

Their ids are derived from their natural keys (run + VM, backup set + disk), so a
repeated write finds the document it would create: that is what makes the worker's
RPCs idempotent without a lookup table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, TypedDict

import msgspec

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import BackupSet, DiskVersion, JobId, RunId, VmTask
from edgeback_catalog.vmtaskstate import VmTaskState
from edgeback_core.ids import derived_id
from edgeback_core.messages.backups import FailedDisk
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.messages.runs import DiskStats, VmRef

KEPT: Final[dict[str, Any]] = {"retention_state": {"$exists": False}}
"""The filter of backup sets retention has not chosen to remove (``expiry.py``): only
those are restore points and bases."""


def task_id(run_id: str, vm_id: str) -> str:
    return derived_id("vm_task", run_id, vm_id)


def backup_set_id(run_id: str, vm_id: str) -> str:
    return derived_id("backup_set", run_id, vm_id)


def disk_version_id(set_id: str, disk_id: str) -> str:
    return derived_id("disk_version", set_id, disk_id)


class ResultDoc(TypedDict):
    attempt: int
    state: str
    code: str
    at: datetime


class VmTaskDoc(TypedDict):
    _id: str
    run_id: str
    job_id: str
    vm_id: str
    vm: dict[str, Any]
    state: str
    attempt: int
    code: str
    message: str
    worker_id: str
    started_at: datetime | None
    finished_at: datetime | None
    failed_disks: list[dict[str, Any]]
    results: list[ResultDoc]
    backup_set_id: str | None
    claimed_until: datetime | None
    retrying: bool


def new_task_doc(run_id: RunId, job_id: JobId, vm: VmRef) -> VmTaskDoc:
    return VmTaskDoc(
        _id=task_id(run_id, vm.vm_id),
        run_id=run_id,
        job_id=job_id,
        vm_id=vm.vm_id,
        vm=msgspec.to_builtins(vm),
        state=str(VmTaskState.PENDING),
        attempt=1,
        code="",
        message="",
        worker_id="",
        started_at=None,
        finished_at=None,
        failed_disks=[],
        results=[],
        backup_set_id=None,
        claimed_until=None,
        retrying=False,
    )


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def task_of(doc: dict[str, Any]) -> VmTask:
    return VmTask(
        run_id=RunId(doc["run_id"]),
        job_id=JobId(doc["job_id"]),
        vm=msgspec.convert(doc["vm"], VmRef),
        state=VmTaskState(doc["state"]),
        attempt=int(doc["attempt"]),
        code=doc.get("code", ""),
        message=doc.get("message", ""),
        worker_id=doc.get("worker_id", ""),
        started_at=_maybe_utc(doc.get("started_at")),
        finished_at=_maybe_utc(doc.get("finished_at")),
        failed_disks=tuple(msgspec.convert(d, FailedDisk) for d in doc.get("failed_disks", [])),
        results={
            int(r["attempt"]): (VmTaskState(r["state"]), r["code"]) for r in doc.get("results", [])
        },
        backup_set_id=doc.get("backup_set_id"),
        claimed_until=_maybe_utc(doc.get("claimed_until")),
        retrying=bool(doc.get("retrying", False)),
    )


def backup_set_of(doc: dict[str, Any]) -> BackupSet:
    return BackupSet(
        id=doc["_id"],
        run_id=RunId(doc["run_id"]),
        job_id=JobId(doc["job_id"]),
        vm=msgspec.convert(doc["vm"], VmRef),
        backup_type=doc["backup_type"],
        pool=msgspec.convert(doc["pool"], PoolRef),
        taken_at=utc(doc["taken_at"]),
        base_backup_set_id=doc.get("base_backup_set_id"),
        complete=bool(doc.get("complete", False)),
        disk_count=int(doc.get("disk_count", 0)),
        created_at=utc(doc["created_at"]),
    )


def disk_version_doc(version: DiskVersion, run_id: str, vm_id: str) -> dict[str, Any]:
    return {
        "_id": version.id,
        "backup_set_id": version.backup_set_id,
        "run_id": run_id,
        "vm_id": vm_id,
        "disk_id": version.disk_id,
        "manifest_name": version.manifest_name,
        "manifest_version": version.manifest_version,
        "size_bytes": version.size_bytes,
        "stats": msgspec.to_builtins(version.stats),
        "snapshot_name": version.snapshot_name,
        "snapshot_kept": version.snapshot_kept,
        "committed_at": version.committed_at,
    }


def disk_version_of(doc: dict[str, Any]) -> DiskVersion:
    return DiskVersion(
        id=doc["_id"],
        backup_set_id=doc["backup_set_id"],
        disk_id=doc["disk_id"],
        manifest_name=doc["manifest_name"],
        manifest_version=doc["manifest_version"],
        size_bytes=int(doc["size_bytes"]),
        stats=msgspec.convert(doc.get("stats", {}), DiskStats),
        snapshot_name=doc.get("snapshot_name", ""),
        snapshot_kept=bool(doc.get("snapshot_kept", False)),
        committed_at=utc(doc["committed_at"]),
    )
