"""Wire structs of retention: the catalog RPCs that expire a job's restore points, the
protection of a backup set, and the events of the scheduler's maintenance pass.

A pass (``docs/retention.md``) is three steps: ``catalog.retention.plan`` applies the
job's policy (``edgeback_core.retention.select``) and marks the backup sets it removes
``expiring`` (from then on they are neither restore points nor bases); the caller
deletes their manifests on the storage node; ``catalog.retention.confirm`` marks them
``deleted``. Plan answers every set of the job still ``expiring``, the new ones and
those a crashed pass left, so a pass interrupted anywhere is finished by the next one.
Both carry the scheduler's fencing token (``lease_lost`` otherwise).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import ActorRef, Request
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.messages.runs import BackupType, Versioned

RETENTION_JOBS: Final = "catalog.retention.jobs"
RETENTION_PLAN: Final = "catalog.retention.plan"
RETENTION_CONFIRM: Final = "catalog.retention.confirm"
BACKUP_SET_PROTECT: Final = "catalog.backup_set.protect"

RetentionState = Literal["kept", "expiring", "deleted"]
"""``kept``: a restore point (when complete); ``expiring``: chosen for removal, its
manifests are being deleted; ``deleted``: its manifests are gone (the record stays)."""


class RetentionJobs(Request, frozen=True, kw_only=True):
    """Ids of the jobs that have a retention rule, ``limit`` at a time after ``after``."""

    actor: ActorRef
    after: str = ""
    limit: int = 200


class RetentionJobsReply(Message, frozen=True, kw_only=True):
    job_ids: list[str]
    more: bool = False


class RetentionPlan(Request, frozen=True, kw_only=True):
    """Apply the job's retention policy now (service role, fenced by the scheduler's lease)."""

    actor: ActorRef
    job_id: str
    holder: str
    token: int


class ManifestRef(Message, frozen=True, kw_only=True):
    """One manifest on the node: ``DELETE /v1/pools/{pool}/manifests/{vm}/{disk}/{version}``."""

    vm_id: str
    disk_id: str
    version: str


class ExpiringSet(Message, frozen=True, kw_only=True):
    backup_set_id: str
    job_id: str
    vm_id: str
    backup_type: BackupType
    taken_at: datetime
    pool: PoolRef
    manifests: list[ManifestRef]


class RetentionPlanReply(Message, frozen=True, kw_only=True):
    job_id: str
    expiring: list[ExpiringSet]
    """Every set of the job now expiring (this plan's and any a crashed pass left)."""
    newly_expiring: int = 0
    """How many of them this call marked."""
    kept: int = 0


class RetentionConfirm(Request, frozen=True, kw_only=True):
    """The manifests of these expiring sets are gone from their node: mark them deleted."""

    actor: ActorRef
    holder: str
    token: int
    backup_set_ids: list[str]


class RetentionConfirmReply(Message, frozen=True, kw_only=True):
    deleted: list[str]
    """Marked deleted by this call."""
    already: list[str] = []
    """Deleted before (a repeated confirm)."""


class BackupSetProtect(Request, frozen=True, kw_only=True):
    """Protect (or unprotect) a restore point: retention never removes a protected one."""

    actor: ActorRef
    backup_set_id: str
    protected: bool = True
    reason: str = ""


class BackupSetProtection(Message, frozen=True, kw_only=True):
    backup_set_id: str
    protected: bool
    retention_state: RetentionState
    applied: bool
    """False: it already was so."""


# --- events of the maintenance pass (routing keys in ``bus.topology``) ---------------------
class BackupSetRemoved(Versioned, frozen=True, kw_only=True):
    """Retention removed a restore point: its manifests are gone from the node."""

    backup_set_id: str
    job_id: str
    vm_id: str
    backup_type: BackupType
    taken_at: datetime
    pool_node_url: str
    pool_name: str
    manifests: int
    at: datetime


class PoolCollected(Versioned, frozen=True, kw_only=True):
    """A maintenance pass garbage-collected a pool after removing restore points."""

    pool_node_url: str
    pool_name: str
    removed_chunks: int
    removed_bytes: int
    stored_bytes: int
    """The pool's stored bytes after the collection."""
    at: datetime


MaintenanceEvent = BackupSetRemoved | PoolCollected
"""Decode any maintenance event: ``decoder(MaintenanceEvent)``."""
