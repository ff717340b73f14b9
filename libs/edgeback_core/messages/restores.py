"""Wire structs of VM restores (S1-S7): what a user asks for, the catalog's restore RPCs,
and the commands the worker of the chosen backup host consumes.

A ``RestoreSpec`` names restore points (complete backup sets, one per VM), a target
(the original path overwrites each source VM's own disks; a new path writes into an
existing VM, each source disk mapped to one of its disks), a schedule (immediate,
once, manual) and every option of the guide (S4, S5). Rules that need only the spec
are ``restorerules.problems``; rules that need the target's live state are
``restorerules.refusals``, run by the worker before it writes anything.

Creating a restore returns a short verification code (S6); starting it needs the
code. RPC names are the constants ``RESTORE_*`` (``catalog.restore.<verb>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import ActorRef, Request
from edgeback_core.messages.jobs import PoolRef, Script, SpeedWindow
from edgeback_core.messages.runs import PlanRun, RunVmTask, Versioned, VmRef
from edgeback_core.messages.schedule import Immediate, Manual, Once

RESTORE_CREATE = "catalog.restore.create"
RESTORE_START = "catalog.restore.start"
RESTORE_GET = "catalog.restore.get"
RESTORE_LIST = "catalog.restore.list"
RESTORE_CANCEL = "catalog.restore.cancel"
RESTORE_POINTS = "catalog.restore.points"
BACKUP_SET_IMPORT = "catalog.backup_set.import"

# --- stable codes -------------------------------------------------------------------
# Problems of the spec alone (``restorerules.problems``), refused at create.
MAPPING_TARGET_TWICE = "mapping_target_disk_twice"
MAPPING_SOURCE_TWICE = "mapping_source_disk_twice"
MAPPING_SOURCE_UNMAPPED = "mapping_source_disk_unmapped"
MAPPING_UNKNOWN_SOURCE = "mapping_unknown_source_disk"
MAPPING_TOO_FEW_TARGETS = "mapping_too_few_target_disks"
NEW_PATH_ONE_POINT = "new_path_one_restore_point"
POINT_TWICE_FOR_VM = "restore_point_vm_twice"
POINT_NOT_RESTORABLE = "restore_point_not_restorable"
OPTION_OUT_OF_RANGE = "option_out_of_range"
# Refusals from the target's live state (``restorerules.refusals``, on the worker).
REFUSE_TARGET_VM_GONE = "target_vm_not_found"
REFUSE_TARGET_NOT_ON_CEPH = "target_not_on_ceph"
REFUSE_TARGET_SUSPENDED = "target_vm_suspended"
REFUSE_TARGET_PAUSED = "target_vm_paused"
REFUSE_TARGET_SHELVED = "target_vm_shelved"
REFUSE_TARGET_DISK_GONE = "target_disk_not_found"
REFUSE_TARGET_DISK_SMALLER = "target_disk_smaller"
REFUSE_TARGET_TOO_FEW_DISKS = "target_too_few_disks"
REFUSE_GUEST_AGENT_DOWN = "target_guest_agent_down"
"""Snapshot-before-overwrite needs the target's guest agent (S7)."""
REFUSE_POINT_INCOMPLETE = "restore_point_incomplete"
# instant restore (X8): where Ceph's live migration cannot serve the target
REFUSE_INSTANT_KRBD = "instant_restore_krbd_client"
REFUSE_INSTANT_CEPH_TOO_OLD = "instant_restore_needs_pacific"
"""A manifest or chunk of the restore point is missing in the pool (checked up front)."""
REFUSE_REASONS = frozenset(
    {
        REFUSE_TARGET_VM_GONE,
        REFUSE_TARGET_NOT_ON_CEPH,
        REFUSE_TARGET_SUSPENDED,
        REFUSE_TARGET_PAUSED,
        REFUSE_TARGET_SHELVED,
        REFUSE_TARGET_DISK_GONE,
        REFUSE_TARGET_DISK_SMALLER,
        REFUSE_TARGET_TOO_FEW_DISKS,
        REFUSE_GUEST_AGENT_DOWN,
        REFUSE_POINT_INCOMPLETE,
        REFUSE_INSTANT_KRBD,
        REFUSE_INSTANT_CEPH_TOO_OLD,
    }
)

RestoreStateName = Literal[
    "pending_verification",
    "scheduled",
    "queued",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "partially_succeeded",
    "cancelled",
    "expired",
]


# --- the definition -----------------------------------------------------------------
class DiskMap(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    source_disk_id: str
    target_disk_id: str


class NewPath(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Restore into an existing VM of a registered platform."""

    platform_id: str
    vm_id: str
    disks: list[DiskMap]


class RestoreTarget(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``new_path`` None: the original path (each source VM's own disks, same ids)."""

    new_path: NewPath | None = None


class RestoreOptions(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every general (S4) and advanced (S5) restore option of the guide."""

    host_id: str
    """The backup host whose workers restore."""
    parallel_vms: int = 2
    vms_per_physical_host: int = 2
    disks_per_vm: int = 2
    streams_per_disk: int = 4
    snapshot_before_overwrite: bool = False
    keep_snapshot_on_success: bool = False
    start_vm_after: bool = False
    instant: bool = False
    """X8: each target disk usable at once, its data copied in behind by Ceph's
    import-only live migration from the storage node (docs/instant-restore.md); the
    original image is moved aside until the copy commits (kept with
    ``keep_snapshot_on_success``). Needs Pacific or later and librbd clients."""
    reconnect_minutes: int = 10
    resume_buffer_mib: int = 10
    restore_speed: list[SpeedWindow] = []
    transfer_speed: list[SpeedWindow] = []
    precondition: Script | None = None
    pre_script: Script | None = None
    post_script: Script | None = None


class RestoreSpec(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = ""
    backup_set_ids: list[str]
    """The restore points: complete backup sets, at most one per source VM."""
    target: RestoreTarget = RestoreTarget()
    schedule: Immediate | Once | Manual = Immediate()
    """S3: ``immediate`` (queued when verified), ``once`` (at its time), ``manual``
    (held after verification until started by hand)."""
    options: RestoreOptions


class PointDisk(Message, frozen=True, kw_only=True):
    """One disk of a restore point, as the worker and the refusal rules need it."""

    disk_id: str
    size_bytes: int
    manifest_name: str = ""
    manifest_version: str = ""


class RestorePoint(Message, frozen=True, kw_only=True):
    backup_set_id: str
    vm: VmRef
    backup_type: str
    pool: PoolRef
    taken_at: datetime
    disks: list[PointDisk] = []


# --- catalog RPCs -------------------------------------------------------------------
class RestoreInfo(Message, frozen=True, kw_only=True):
    id: str
    state: RestoreStateName
    version: int
    spec: RestoreSpec
    points: list[RestorePoint]
    created_by: str
    created_at: datetime
    updated_at: datetime
    code_expires_at: datetime | None = None
    reason: str = ""


class RestoreCreated(Message, frozen=True, kw_only=True):
    """The new restore and its verification code: shown once, stored only hashed."""

    restore: RestoreInfo
    verification_code: str


class RestoreCreate(Request, frozen=True, kw_only=True):
    actor: ActorRef
    spec: RestoreSpec


class RestoreStart(Request, frozen=True, kw_only=True):
    """Submit a created restore: ``verification_code`` as shown by create."""

    actor: ActorRef
    restore_id: str
    verification_code: str


class RestoreGet(Request, frozen=True, kw_only=True):
    actor: ActorRef
    restore_id: str


class RestoreList(Request, frozen=True, kw_only=True):
    actor: ActorRef
    state: RestoreStateName | None = None
    limit: int = 50


class RestoreListReply(Message, frozen=True, kw_only=True):
    restores: list[RestoreInfo]


class RestoreCancel(Request, frozen=True, kw_only=True):
    actor: ActorRef
    restore_id: str


class RestorePointsQuery(Request, frozen=True, kw_only=True):
    """Browse restore points (S1): newest first, every filter optional but one needed."""

    actor: ActorRef
    vm_id: str | None = None
    pool: PoolRef | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    limit: int = 50


class RestorePointsReply(Message, frozen=True, kw_only=True):
    points: list[RestorePoint]


# --- catalog import (X4) ------------------------------------------------------------
class ImportedDisk(Message, frozen=True, kw_only=True):
    """One manifest that passed its checks (MAC, checksum, name), as read from the pool."""

    vm_id: str
    disk_id: str
    version: str
    image: str
    image_size: int
    backup_type: str
    created_ms: int
    chunks: int
    zero_chunks: int


class BackupSetImport(Request, frozen=True, kw_only=True):
    actor: ActorRef
    pool: PoolRef
    disks: list[ImportedDisk]


class BackupSetImportReply(Message, frozen=True, kw_only=True):
    backup_sets_added: int
    disk_versions_added: int


# --- commands to the backup host (``run_routing_key(host_id)``) ---------------------
class PlanRestore(Versioned, frozen=True, kw_only=True):
    """Plan a verified restore on its backup host: check every refusal of every target
    before anything is written, then publish one ``RestoreVmTask`` per restore point."""

    restore_id: str
    host_id: str


class RestoreVmTask(Versioned, frozen=True, kw_only=True):
    """Restore one VM (one restore point) of a restore; ``attempt`` counts from 1."""

    restore_id: str
    host_id: str
    backup_set_id: str
    target_vm: VmRef
    disks: list[DiskMap]
    attempt: int = 1


RestoreCommand = PlanRestore | RestoreVmTask
HostCommand = PlanRun | RunVmTask | PlanRestore | RestoreVmTask
"""What a worker's run queue (``worker.runs.<host>``) carries: ``decoder(HostCommand)``."""
