"""Commands and events of backup runs on the bus: versioned types for integrations.

``StartRun`` is the one way to start a run, whoever sends it (API, scheduler, an
outside system); its ``idempotency_key`` makes a repeated command start one run.
``RunVmTask`` is the per-VM command the workers of the job's backup host compete for.
Events are published on the events exchange (routing keys in ``bus.topology``).

Versioning: every type carries ``version`` (the schema version of that type, 1 today)
and a tag (``type``: the class name) so one decoder (``RunEvent``) reads them all.
A compatible change adds a field with a default and keeps the version; an
incompatible one is a new type (``RunStartedV2``), published beside the old one while
subscribers move. Consumers ignore unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from edgeback_core.messages.base import Message

BackupType = Literal["full", "incremental", "cumulative"]
VmOutcome = Literal["succeeded", "failed", "skipped", "refused"]
RunOutcome = Literal["succeeded", "partially_succeeded", "failed", "cancelled"]

# Stable reason codes of a skipped or refused VM (B5, B8): the same strings as the
# worker's ``eligibility.Refusal`` / ``Skip``; a failed VM carries the ``code`` of the
# error that failed it (``edgeback_core.errors``).
SKIP_LOW_FREE_SPACE = "datastore_low_free_space"
SKIP_EXCLUDED = "excluded_by_name"
SKIP_REASONS = frozenset({SKIP_LOW_FREE_SPACE, SKIP_EXCLUDED})
REFUSE_NOT_ON_CEPH = "vm_not_on_ceph"
REFUSE_SHELVED = "vm_shelved"
REFUSE_NO_GUEST_AGENT = "guest_agent_missing"
REFUSE_GUEST_AGENT_DOWN = "guest_agent_not_running"
REFUSE_VM_GONE = "vm_not_found"
REFUSE_REASONS = frozenset(
    {
        REFUSE_NOT_ON_CEPH,
        REFUSE_SHELVED,
        REFUSE_NO_GUEST_AGENT,
        REFUSE_GUEST_AGENT_DOWN,
        REFUSE_VM_GONE,
    }
)


class Versioned(Message, frozen=True, kw_only=True, tag_field="type", tag=True):
    """Base of run commands and events: tagged with the class name, versioned."""

    version: int = 1


class VmRef(Message, frozen=True, kw_only=True):
    """One VM as the platform listed it when the run started."""

    platform_id: str
    vm_id: str
    name: str = ""
    physical_host_id: str = ""


# --- commands -------------------------------------------------------------------------
class StartRun(Versioned, frozen=True, kw_only=True):
    """Start a run of ``job_id`` now. Two commands with the same ``job_id`` and
    ``idempotency_key`` start one run (the catalog derives the run id from them)."""

    job_id: str
    requested_by: str
    idempotency_key: str
    backup_type: BackupType | None = None
    """Override the job's backup type for this run (None = the job's)."""
    due_at: datetime | None = None
    """Set by the scheduler: the due time of the schedule slot this run is for."""
    late_by_s: float = 0.0
    """Set by the scheduler: how long after ``due_at`` it fired. A slot that fell due while
    no scheduler ran fires once, late, with this saying by how much (``docs/scheduler.md``)."""


class PlanRun(Versioned, frozen=True, kw_only=True):
    """Plan a started run on its backup host (``run.<host_id>``): precondition, resolve
    the VMs, record them (``catalog.run.vm.plan``), publish one ``RunVmTask`` each."""

    run_id: str
    job_id: str
    job_revision: int
    host_id: str
    backup_type: BackupType
    requested_by: str = ""
    """The ``StartRun``'s, for ``RunStarted``."""


class RunVmTask(Versioned, frozen=True, kw_only=True):
    """Back up one VM of a run: consumed by any worker of ``host_id`` (``run.<host_id>``).
    ``attempt`` counts from 1; a VM retry is the same task with the next attempt."""

    run_id: str
    job_id: str
    job_revision: int
    host_id: str
    vm: VmRef
    backup_type: BackupType
    attempt: int = 1
    not_before: datetime | None = None
    """A VM retry: not to be started before then (``vm_retry_interval_s`` after the
    failed attempt); a worker that gets it earlier defers it."""


# --- events ---------------------------------------------------------------------------
class RunStarted(Versioned, frozen=True, kw_only=True):
    run_id: str
    job_id: str
    host_id: str
    backup_type: BackupType
    vm_count: int
    requested_by: str
    at: datetime


class RunSkipped(Versioned, frozen=True, kw_only=True):
    """A ``StartRun`` that started nothing: the job is disabled, already running, or
    the command cannot be carried out (no such job, a malformed key)."""

    job_id: str
    requested_by: str
    idempotency_key: str
    code: str
    """``job_busy`` or ``job_disabled`` (the command is done with); ``not_found`` (no
    such job) or ``invalid_input``: the command is also dead-lettered."""
    active_run_ids: list[str] = []
    at: datetime


class VmStarted(Versioned, frozen=True, kw_only=True):
    run_id: str
    job_id: str
    vm: VmRef
    attempt: int
    worker_id: str
    at: datetime


class RunProgress(Versioned, frozen=True, kw_only=True):
    """Published at a bounded rate (at most once every few seconds per run)."""

    run_id: str
    job_id: str
    bytes_done: int
    bytes_total: int
    rate_bps: float
    eta_s: float | None = None
    vms_done: int = 0
    vms_total: int = 0
    at: datetime
    vm: VmRef | None = None
    """Set when the progress is one VM task's (its disks' bytes), as workers report it."""


class DiskStats(Message, frozen=True, kw_only=True):
    """Bytes of one disk version; ``bytes_read`` = new + deduplicated (of what was read)."""

    bytes_read: int = 0
    bytes_new: int = 0
    bytes_deduplicated: int = 0
    bytes_sparse: int = 0
    bytes_unchanged: int = 0
    duration_s: float = 0.0


class VmFinished(Versioned, frozen=True, kw_only=True):
    run_id: str
    job_id: str
    vm: VmRef
    attempt: int
    outcome: Literal["succeeded", "failed"]
    code: str = ""
    """The error code when failed."""
    message: str = ""
    backup_set_id: str | None = None
    stats: DiskStats = DiskStats()
    will_retry: bool = False
    at: datetime
    warnings: list[str] = []
    """What went differently than asked, e.g. a full instead of an incremental because
    the base snapshot or manifest is gone."""


class VmNotBackedUp(Versioned, frozen=True, kw_only=True):
    """Base of the two ways a VM is left out with a reason code."""

    run_id: str
    job_id: str
    vm: VmRef
    code: str
    message: str = ""
    at: datetime


class VmSkipped(VmNotBackedUp, frozen=True, kw_only=True):
    """Left out before its snapshot; ``code`` is one of ``SKIP_REASONS``."""


class VmRefused(VmNotBackedUp, frozen=True, kw_only=True):
    """Cannot be backed up; ``code`` is one of ``REFUSE_REASONS``."""


class RunFinished(Versioned, frozen=True, kw_only=True):
    run_id: str
    job_id: str
    outcome: RunOutcome
    vms_succeeded: int = 0
    vms_failed: int = 0
    vms_skipped: int = 0
    vms_refused: int = 0
    stats: DiskStats = DiskStats()
    code: str = ""
    """Why the whole run failed, when it did before any VM (e.g. ``precondition_failed``)."""
    at: datetime


class BackupSetCreated(Versioned, frozen=True, kw_only=True):
    backup_set_id: str
    run_id: str
    job_id: str
    vm: VmRef
    backup_type: BackupType
    pool_node_url: str
    pool_name: str
    disk_count: int
    taken_at: datetime
    at: datetime


RunCommand = PlanRun | RunVmTask
"""Decode what a worker's run queue carries: ``decoder(RunCommand)``."""

RunEvent = (
    RunStarted
    | RunSkipped
    | VmStarted
    | RunProgress
    | VmFinished
    | VmSkipped
    | VmRefused
    | RunFinished
    | BackupSetCreated
)
"""Decode any run event: ``decoder(RunEvent)`` (the ``type`` tag picks the class)."""
