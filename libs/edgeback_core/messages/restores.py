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
RESTORE_RUN = "catalog.restore.run"
RESTORE_POINTS = "catalog.restore.points"
BACKUP_SET_IMPORT = "catalog.backup_set.import"
# what the workers of the restore's backup host call (only its broker user ``host-<id>``)
RESTORE_TRANSITION = "catalog.restore.transition"
RESTORE_VM_PLAN = "catalog.restore.vm.plan"
RESTORE_VM_START = "catalog.restore.vm.start"
RESTORE_VM_RENEW = "catalog.restore.vm.renew"
RESTORE_VM_FINISH = "catalog.restore.vm.finish"
RESTORE_EVENTS = "catalog.restore.events"

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
POINT_NO_ORIGINAL_VM = "restore_point_no_original_vm"
"""An imported point names no platform: it has no original path, only a new one."""
OPTION_OUT_OF_RANGE = "option_out_of_range"
ONCE_TIME_PAST = "once_time_past"
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
REFUSE_INSTANT_POOL = "instant_restore_pool_not_servable"
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
        REFUSE_INSTANT_POOL,
    }
)

RESTORE_VM_REFUSALS = REFUSE_REASONS | {MAPPING_SOURCE_TWICE, MAPPING_TARGET_TWICE}
"""The codes a worker may refuse one VM of a restore with (it checks the mapping again)."""

RestoreVmState = Literal["pending", "running", "succeeded", "failed", "refused"]
RestoreVmResult = Literal["succeeded", "failed", "refused"]
RestoreOutcome = Literal["succeeded", "partially_succeeded", "failed", "cancelled"]

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
    changed_only: bool = True
    """Write only what changed since the restore point was taken, when a target disk is
    the very image it was backed up from and still holds the backup's own snapshot (the
    latest point of a VM backed up incrementally): Ceph's diff from that snapshot names
    the chunks that changed, the rest is the backup's bytes already (checked on a sample
    of them first; a mismatch writes everything). False, or another target: every data
    chunk is written, and a zero chunk only where the target holds data."""
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


# --- the VMs of a restore -----------------------------------------------------------
class RestoreDiskStats(Message, frozen=True, kw_only=True):
    """What restoring one disk did: ``disk_id`` is the target disk."""

    disk_id: str
    source_disk_id: str = ""
    bytes_written: int = 0
    """Bytes of data chunks written into the target image."""
    bytes_zeroed: int = 0
    """Bytes of zero chunks written as zeroes (the rest of the image)."""
    bytes_fetched: int = 0
    """Bytes of chunk records received from the storage node."""
    bytes_left: int = 0
    """Bytes not written because the target held them already (``changed_only``, or
    zero chunks where the target holds no data), from the resume point on when the
    disk's restore resumed from a checkpoint."""
    chunks_fetched: int = 0
    duration_s: float = 0.0


class RestoreRefusal(Message, frozen=True, kw_only=True):
    code: str
    reason: str = ""
    disk_id: str = ""


class RestoreVmInfo(Message, frozen=True, kw_only=True):
    """One VM of a restore: one restore point written into one target VM."""

    restore_id: str
    backup_set_id: str
    source_vm: VmRef
    target_vm: VmRef
    disks: list[DiskMap] = []
    """The new path's mapping; empty on the original path (each disk onto its own)."""
    state: RestoreVmState
    attempt: int = 1
    code: str = ""
    message: str = ""
    worker_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rolled_back: list[str] = []
    """Target disks returned to the safety snapshot after a failure."""
    refusals: list[RestoreRefusal] = []
    stats: list[RestoreDiskStats] = []
    snapshot_id: str | None = None
    """The safety snapshot, when it was kept after a success."""
    vm_started: bool = False


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
    due_at: datetime | None = None
    """Schedule ``once``: when the scheduler queues it (UTC)."""
    job_id: str | None = None
    """The restore job it was made from (``catalog.restore_job.*``); None: a one-off."""
    vms: list[RestoreVmInfo] = []
    """Each VM's outcome and per-disk figures (``catalog.restore.get``; empty in lists)."""


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


class RestoreRun(Request, frozen=True, kw_only=True):
    """Queue a verified restore of schedule ``manual`` now (``restore_not_runnable``
    for any other state or schedule)."""

    actor: ActorRef
    restore_id: str


class RestoreGet(Request, frozen=True, kw_only=True):
    actor: ActorRef
    restore_id: str


class RestoreList(Request, frozen=True, kw_only=True):
    """Restores the actor may see, newest first; pass ``next_after`` back as ``after``."""

    actor: ActorRef
    state: RestoreStateName | None = None
    limit: int = 50
    after: str | None = None
    host_id: str | None = None
    """Restores by this backup host's workers."""
    backup_set_id: str | None = None
    """Restores of this restore point."""
    created_after: datetime | None = None
    created_before: datetime | None = None


class RestoreListReply(Message, frozen=True, kw_only=True):
    restores: list[RestoreInfo]
    next_after: str | None = None
    """None: this was the last page."""


class RestoreCancel(Request, frozen=True, kw_only=True):
    actor: ActorRef
    restore_id: str


class RestorePointsQuery(Request, frozen=True, kw_only=True):
    """Browse restore points (S1) of the jobs the actor sees: newest first, every
    filter optional."""

    actor: ActorRef
    vm_id: str | None = None
    vm: str | None = None
    """Search: part of the VM's name or id, any case."""
    pool: PoolRef | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    limit: int = 50
    after: str | None = None
    """``next_after`` of the previous page."""


class RestorePointsReply(Message, frozen=True, kw_only=True):
    points: list[RestorePoint]
    next_after: str | None = None
    """None: this was the last page."""


class RestoreTransition(Request, frozen=True, kw_only=True):
    """A worker moves the restore (``queued → running``, or ``failed`` by its
    precondition: ``reason`` is then the code)."""

    actor: ActorRef
    restore_id: str
    target: RestoreStateName
    reason: str = ""


class RestoreVmPlan(Request, frozen=True, kw_only=True):
    """Record the restore's VM tasks (one per restore point); a repeat gets the same."""

    actor: ActorRef
    restore_id: str


class RestoreVmPlanReply(Message, frozen=True, kw_only=True):
    vms: list[RestoreVmInfo]


class RestoreVmClaim(Request, frozen=True, kw_only=True):
    """Start (claim) or renew the claim of one VM's attempt for ``worker_id``."""

    actor: ActorRef
    restore_id: str
    backup_set_id: str
    attempt: int = 1
    worker_id: str
    claim_s: float = 60.0


class RestoreVmStart(RestoreVmClaim, frozen=True, kw_only=True):
    pass


class RestoreVmRenew(RestoreVmClaim, frozen=True, kw_only=True):
    pass


class RestoreVmFinish(Request, frozen=True, kw_only=True):
    actor: ActorRef
    restore_id: str
    backup_set_id: str
    attempt: int = 1
    outcome: RestoreVmResult
    code: str = ""
    """The error code when failed; the first refusal's code when refused."""
    message: str = ""
    rolled_back: list[str] = []
    refusals: list[RestoreRefusal] = []
    stats: list[RestoreDiskStats] = []
    snapshot_id: str | None = None
    vm_started: bool = False
    worker_id: str = ""
    """Set: the VM's running attempt is finished only by the worker holding its claim
    (another's finish gets ``lease_lost``)."""


class RestoreVmReply(Message, frozen=True, kw_only=True):
    task: RestoreVmInfo
    applied: bool
    restore_state: RestoreStateName | None = None
    """The restore's state: ``cancelling`` tells the worker to stop."""


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


# --- events (``edgeback.events``, routing keys ``bus.topology.RESTORE_EVENT_KEYS``) ---
class RestoreStarted(Versioned, frozen=True, kw_only=True):
    restore_id: str
    host_id: str
    vm_count: int
    requested_by: str
    at: datetime


class RestoreVmStarted(Versioned, frozen=True, kw_only=True):
    restore_id: str
    backup_set_id: str
    target_vm: VmRef
    attempt: int
    worker_id: str
    at: datetime


class RestoreProgress(Versioned, frozen=True, kw_only=True):
    """One disk of one VM, at most every few seconds (the last report always)."""

    restore_id: str
    backup_set_id: str
    target_vm: VmRef
    disk_id: str
    """The target disk."""
    bytes_done: int
    bytes_total: int
    rate_bps: float
    eta_s: float | None = None
    at: datetime


class RestoreVmFinished(Versioned, frozen=True, kw_only=True):
    restore_id: str
    backup_set_id: str
    target_vm: VmRef
    attempt: int
    outcome: RestoreVmResult
    code: str = ""
    message: str = ""
    rolled_back: list[str] = []
    refusals: list[RestoreRefusal] = []
    stats: list[RestoreDiskStats] = []
    at: datetime


class RestoreFinished(Versioned, frozen=True, kw_only=True):
    """Published by the catalog once, when the restore ended (like ``RunFinished``)."""

    restore_id: str
    outcome: RestoreOutcome
    vms_succeeded: int = 0
    vms_failed: int = 0
    vms_refused: int = 0
    code: str = ""
    """Why the restore failed before any VM (e.g. ``precondition_failed``)."""
    at: datetime


RestoreEvent = (
    RestoreStarted | RestoreVmStarted | RestoreProgress | RestoreVmFinished | RestoreFinished
)
"""Decode any restore event: ``decoder(RestoreEvent)``."""


class RestoreEventsGet(Request, frozen=True, kw_only=True):
    """One page of a restore's event log, oldest first (whoever may read the restore)."""

    actor: ActorRef
    restore_id: str
    after: str | None = None
    """``next_after`` of the previous page."""
    limit: int = 100
    type: str | None = None
    """Only events of this type (``RestoreVmFinished``, ...)."""
    since: datetime | None = None
    """Only events at or after this time."""


class RestoreLogEntry(Message, frozen=True, kw_only=True):
    message_id: str
    received_at: datetime
    event: RestoreEvent


class RestoreEventsReply(Message, frozen=True, kw_only=True):
    events: list[RestoreLogEntry]
    next_after: str | None = None
    """None: this was the last page."""
