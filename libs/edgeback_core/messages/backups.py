"""Wire structs of the catalog RPCs a backup run uses: start a run of a job, its VM
tasks, disk version commits, backup sets and the bases of the next backup, leases.

Every write a worker makes is idempotent on a natural key: a run on (job id,
idempotency key), a VM task step on (run id, VM id, attempt), a disk version on (run
id, VM id, disk id). Repeating a request with the same content answers
``applied=false``; the same key with different content is a ``conflict``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import ActorRef, Request, RunInfo, RunStateName
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.messages.runs import BackupType, DiskStats, RunEvent, VmOutcome, VmRef

RUN_START = "catalog.run.start"
RUN_DETAIL = "catalog.run.detail"
RUN_FINISH = "catalog.run.finish"
RUN_CANCEL = "catalog.run.cancel"
RUN_EVENTS = "catalog.run.events"
VM_PLAN = "catalog.run.vm.plan"
VM_START = "catalog.run.vm.start"
VM_FINISH = "catalog.run.vm.finish"
VM_RENEW = "catalog.run.vm.renew"
DISK_COMMIT = "catalog.run.disk.commit"
BACKUP_SET_GET = "catalog.backup_set.get"
BACKUP_SET_LIST = "catalog.backup_set.list"
BACKUP_SET_BASE = "catalog.backup_set.base"
LEASE_ACQUIRE = "catalog.lease.acquire"
LEASE_RENEW = "catalog.lease.renew"
LEASE_RELEASE = "catalog.lease.release"

VmTaskStateName = Literal["pending", "running", "succeeded", "failed", "skipped", "refused"]


# --- runs of jobs -----------------------------------------------------------------------
class RunStart(Request, frozen=True, kw_only=True):
    """Create the run a ``StartRun`` command asks for (once per idempotency key)."""

    actor: ActorRef = ActorRef()
    job_id: str
    requested_by: str
    idempotency_key: str
    backup_type: BackupType | None = None


class RunStartReply(Message, frozen=True, kw_only=True):
    run: RunInfo
    applied: bool
    """False: a run with this key existed already (the command was repeated)."""
    job_revision: int
    backup_type: BackupType
    pool: PoolRef


class DiskVersionInfo(Message, frozen=True, kw_only=True):
    id: str
    backup_set_id: str
    disk_id: str
    manifest_name: str
    manifest_version: str
    size_bytes: int
    stats: DiskStats
    snapshot_name: str
    snapshot_kept: bool
    committed_at: datetime


class FailedDisk(Message, frozen=True, kw_only=True):
    disk_id: str
    code: str
    message: str = ""


class VmTaskInfo(Message, frozen=True, kw_only=True):
    run_id: str
    vm: VmRef
    state: VmTaskStateName
    attempt: int
    code: str = ""
    message: str = ""
    worker_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failed_disks: list[FailedDisk] = []
    backup_set_id: str | None = None
    claimed_until: datetime | None = None
    """The running attempt belongs to ``worker_id`` until then (renewed while it works)."""
    retrying: bool = False
    """Failed, and another attempt will come: the run is not over."""


class RunDetailGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    run_id: str


class RunDetail(Message, frozen=True, kw_only=True):
    run: RunInfo
    vms: list[VmTaskInfo]
    backup_set_ids: list[str]
    stats: DiskStats


class RunFinish(Request, frozen=True, kw_only=True):
    """End the run with the state its VMs give: all succeeded → succeeded, some →
    partially_succeeded, none → failed. Refused while a VM is pending or running
    unless ``abandon_unfinished`` (they then count as failed)."""

    actor: ActorRef = ActorRef()
    run_id: str
    request_id: str
    abandon_unfinished: bool = False


class RunCancel(Request, frozen=True, kw_only=True):
    """Ask a run to stop: a pending run is cancelled at once, a queued or running one
    becomes ``cancelling`` (its workers see it and stop). Repeating it is answered with
    ``applied=false``; a run that ended otherwise answers ``invalid_transition``."""

    actor: ActorRef
    run_id: str
    reason: str = ""


class RunEventsGet(Request, frozen=True, kw_only=True):
    """One page of the event log of a run (``run_id``) or of every run of a job
    (``job_id``, which also holds its ``RunSkipped``), oldest first; exactly one of the two."""

    actor: ActorRef
    run_id: str | None = None
    job_id: str | None = None
    after: str | None = None
    """``next_after`` of the previous page."""
    limit: int = 100
    type: str | None = None
    """Only events of this type (``VmFinished``, ...)."""
    since: datetime | None = None
    """Only events at or after this time."""


class RunLogEntry(Message, frozen=True, kw_only=True):
    message_id: str
    received_at: datetime
    event: RunEvent


class RunEventsReply(Message, frozen=True, kw_only=True):
    events: list[RunLogEntry]
    next_after: str | None = None
    """None: this was the last page."""


# --- VM tasks ---------------------------------------------------------------------------
class VmPlan(Request, frozen=True, kw_only=True):
    """The VMs a run will back up, as listed at its start: each becomes a pending task."""

    actor: ActorRef = ActorRef()
    run_id: str
    vms: list[VmRef]


class VmPlanReply(Message, frozen=True, kw_only=True):
    vms: list[VmTaskInfo]


class VmStart(Request, frozen=True, kw_only=True):
    """Claim a VM's attempt. The caller holds it when the reply's task is ``running``
    under its ``worker_id``: a fresh start or a takeover (``applied``), or its own claim
    again. Another worker's live claim: not held, defer and try later."""

    actor: ActorRef = ActorRef()
    run_id: str
    vm: VmRef
    attempt: int = 1
    worker_id: str
    claim_s: float = 120.0


class VmRenew(Request, frozen=True, kw_only=True):
    """Extend the claim on a running attempt; ``lease_lost`` if another worker took it."""

    actor: ActorRef = ActorRef()
    run_id: str
    vm_id: str
    attempt: int = 1
    worker_id: str
    claim_s: float = 120.0


class VmFinish(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    run_id: str
    vm_id: str
    attempt: int = 1
    outcome: VmOutcome
    code: str = ""
    """Failed: the error code; skipped / refused: one of the reason codes."""
    message: str = ""
    failed_disks: list[FailedDisk] = []
    will_retry: bool = False
    """A failed attempt that will be retried: the run waits for the next attempt."""
    worker_id: str = ""
    """Set: recorded only while this worker holds the running attempt's claim, else
    ``lease_lost`` (a worker that lost the VM to another during a catalog outage)."""


class VmTaskReply(Message, frozen=True, kw_only=True):
    task: VmTaskInfo
    applied: bool
    run_state: RunStateName | None = None
    """The run's state after the step: on a start or a renewal ``cancelling`` tells the
    worker to stop; after a finish, terminal when this VM was the last one."""


# --- disk versions and backup sets ------------------------------------------------------
class DiskCommit(Request, frozen=True, kw_only=True):
    """Record one disk version of the VM's backup set (created with the first disk)."""

    actor: ActorRef = ActorRef()
    run_id: str
    vm_id: str
    disk_id: str
    backup_type: BackupType
    """What this VM's backup really is (an incremental without its base falls back to full)."""
    taken_at: datetime
    """When the VM's snapshot was taken: the restore point's time."""
    base_backup_set_id: str | None = None
    manifest_name: str
    manifest_version: str
    size_bytes: int
    stats: DiskStats = DiskStats()
    snapshot_name: str = ""
    snapshot_kept: bool = False
    worker_id: str = ""
    """Set: accepted only while this worker holds the VM's claim, else ``lease_lost``
    (a repeat of a stored commit is answered whoever asks)."""


class DiskCommitReply(Message, frozen=True, kw_only=True):
    disk_version: DiskVersionInfo
    applied: bool


class BackupSetInfo(Message, frozen=True, kw_only=True):
    id: str
    run_id: str
    job_id: str
    vm: VmRef
    backup_type: BackupType
    pool: PoolRef
    taken_at: datetime
    base_backup_set_id: str | None = None
    complete: bool
    """True once its VM finished successfully: only complete sets are restore points."""
    disk_count: int = 0
    created_at: datetime


class BackupSetGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    backup_set_id: str


class BackupSetList(Request, frozen=True, kw_only=True):
    """Newest first, of the jobs the actor sees; at least one of run, VM, job. Pass the
    reply's ``next_after`` as ``after`` for the next page."""

    actor: ActorRef = ActorRef()
    run_id: str | None = None
    vm_id: str | None = None
    job_id: str | None = None
    limit: int = 100
    complete: bool | None = None
    """True: restore points only."""
    after: str | None = None


class BackupSetListReply(Message, frozen=True, kw_only=True):
    backup_sets: list[BackupSetInfo]
    next_after: str | None = None
    """None: this was the last page."""


class BackupSetBaseGet(Request, frozen=True, kw_only=True):
    """The base of the next backup of a VM: for ``incremental`` the last complete set
    of any type, for ``cumulative`` the last complete full; same job and pool."""

    actor: ActorRef = ActorRef()
    vm_id: str
    job_id: str
    pool: PoolRef
    for_type: Literal["incremental", "cumulative"]


class BackupSetWithDisks(Message, frozen=True, kw_only=True):
    backup_set: BackupSetInfo | None = None
    """None: no base exists (the backup falls back to full)."""
    disks: list[DiskVersionInfo] = []


# --- leases -----------------------------------------------------------------------------
class LeaseAcquire(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    scope: str
    """``run:<run_id>``, ``hypervisor:<platform_id>/<physical_host_id>``, ..."""
    holder: str
    """Unique per unit of work, e.g. ``<worker_id>/<run_id>/<vm_id>``."""
    limit: int
    ttl_s: float = 60.0


class LeaseRenew(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    scope: str
    slot: int
    holder: str
    ttl_s: float = 60.0


class LeaseRelease(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    scope: str
    slot: int
    holder: str


class LeaseInfo(Message, frozen=True, kw_only=True):
    scope: str
    slot: int
    holder: str
    expires_at: datetime


class LeaseReply(Message, frozen=True, kw_only=True):
    lease: LeaseInfo | None = None
    """None: every slot is held by others; try again later."""


# --- runs of a job, listed ----------------------------------------------------------------
RUN_LIST = "catalog.run.list"


class RunList(Request, frozen=True, kw_only=True):
    """Runs of one job (``job_id``) or of every job visible to the actor, newest first;
    pass the reply's ``next_after`` as ``after`` for the next page (``next_before`` as
    ``before`` still works, but loses runs created in the same instant)."""

    actor: ActorRef
    job_id: str | None = None
    state: RunStateName | None = None
    before: datetime | None = None
    limit: int = 50
    host_id: str | None = None
    backup_type: BackupType | None = None
    created_after: datetime | None = None
    """Runs created at or after this time."""
    created_before: datetime | None = None
    """Runs created before this time."""
    after: str | None = None


class RunListReply(Message, frozen=True, kw_only=True):
    runs: list[RunInfo]
    next_before: datetime | None = None
    next_after: str | None = None
    """None: this was the last page."""
