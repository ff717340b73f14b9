"""Wire structs of backup jobs: the job definition, and the catalog's job RPCs.

A ``JobSpec`` is what a user saves (features B1-B8): which VMs (content), where to
(target), which backup type, and every option of the guide with its default. The
structs only type-check; the ranges and the rules between fields are checked by
``jobrules.problems``, which names every problem at once. RPC names are the
constants ``JOB_*`` (``catalog.job.<verb>``). A job's ``schedule`` is one of the seven
kinds of ``edgeback_core.messages.schedule`` (default ``manual``); the catalog keeps, beside
it, when it was set (``schedule_anchor``), when it is due next and when it last fired.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import ActorRef, Request, RunInfo
from edgeback_core.messages.schedule import Manual, Schedule

JOB_CREATE = "catalog.job.create"
JOB_GET = "catalog.job.get"
JOB_LIST = "catalog.job.list"
JOB_UPDATE = "catalog.job.update"
JOB_CLONE = "catalog.job.clone"
JOB_DELETE = "catalog.job.delete"
JOB_SET_ENABLED = "catalog.job.set_enabled"
JOB_STOP = "catalog.job.stop"

OPTION_RANGES: Final[dict[str, tuple[int, int]]] = {
    "parallel_vms": (1, 64),
    "vms_per_physical_host": (1, 5),
    "disks_per_vm": (1, 16),
    "streams_per_disk": (1, 16),
    "reconnect_minutes": (1, 60),
    "resume_buffer_mib": (1, 1024),
    "request_retries": (0, 100),
    "vm_retries": (0, 10),
    "vm_retry_interval_s": (0, 86400),
}
"""option: (lowest, highest) accepted, both inclusive."""
MAX_KEEP: Final = 100_000


def _within(low: int, high: int) -> msgspec.Meta:
    """A range stated in the schema but not checked on decoding: ``jobrules`` checks
    every field, to name every problem of a job in one answer."""
    return msgspec.Meta(extra_json_schema={"minimum": low, "maximum": high})


def _option(name: str) -> msgspec.Meta:
    return _within(*OPTION_RANGES[name])


JobType = Literal["full", "incremental", "cumulative"]
DedupMode = Literal["agent", "server"]
RateUnit = Literal["KiB/s", "MiB/s", "GiB/s"]
TransferMode = Literal["san"]


class VmSelection(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """VMs picked in the hierarchy platform → physical host → VM: a selection without
    ``vm_id`` takes every VM of its physical host, one without either every VM of the
    platform (as listed when the run starts)."""

    platform_id: str
    physical_host_id: str | None = None
    vm_id: str | None = None


class JobContent(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    vms: list[VmSelection] = []
    exclude_names: list[str] = []
    """Shell-style globs (``*``, ``?``, ``[...]``) on VM names, case-sensitive."""


class PoolRef(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    node_url: str
    """Base URL of the storage node serving the pool (``http(s)://host:port``)."""
    name: str


class JobTarget(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host_id: str
    """The backup host whose workers run the job."""
    pool: PoolRef


class SpeedWindow(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rate limit during ``start``-``end`` (``HH:MM``, the backup host's local time;
    ``end`` before ``start`` crosses midnight, equal means the whole day)."""

    start: str = "00:00"
    end: str = "00:00"
    rate: int = 0
    """0 = unlimited."""
    unit: RateUnit = "MiB/s"


class Script(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A command run on the backup host (argv split by the shell rules, no shell)."""

    command: str
    timeout_s: int = 300


class RetentionPolicy(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which restore points of a job to keep (``docs/retention.md``); None = no such rule.

    With every rule None (the default) everything is kept. Otherwise a restore point is
    kept when any rule selects it; days, weeks and months are those of the backup
    host's time zone. Protected points, the newest point and the newest full are
    always kept (the next incremental and cumulative need them).
    """

    keep_last: Annotated[int, _within(1, MAX_KEEP)] | None = None
    keep_daily: Annotated[int, _within(1, MAX_KEEP)] | None = None
    keep_weekly: Annotated[int, _within(1, MAX_KEEP)] | None = None
    keep_monthly: Annotated[int, _within(1, MAX_KEEP)] | None = None


class JobOptions(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every option of the guide's general (B5) and advanced (B6) backup options."""

    compression: bool = True
    dedup_mode: DedupMode = "agent"
    parallel_vms: Annotated[int, _option("parallel_vms")] = 2
    vms_per_physical_host: Annotated[int, _option("vms_per_physical_host")] = 2
    disks_per_vm: Annotated[int, _option("disks_per_vm")] = 2
    streams_per_disk: Annotated[int, _option("streams_per_disk")] = 2
    skip_free_percent: float | None = None
    """Skip a VM when a datastore it uses has at most this % free (None = never)."""
    skip_free_gib: float | None = None
    """Skip a VM when a datastore it uses has at most this many GiB free (None = never)."""
    transfer_mode: TransferMode = "san"
    effective_data_only: bool = True
    keep_latest_snapshot: bool = True
    reconnect_minutes: Annotated[int, _option("reconnect_minutes")] = 10
    resume_buffer_mib: Annotated[int, _option("resume_buffer_mib")] = 10
    """Per stream: data held for retransmission after a network fault."""
    backup_speed: list[SpeedWindow] = []
    transfer_speed: list[SpeedWindow] = []
    precondition: Script | None = None
    pre_script: Script | None = None
    post_script: Script | None = None
    request_retries: Annotated[int, _option("request_retries")] = 15
    vm_retries: Annotated[int, _option("vm_retries")] = 3
    vm_retry_interval_s: Annotated[int, _option("vm_retry_interval_s")] = 300
    retention: RetentionPolicy = RetentionPolicy()
    """Default: keep every restore point."""


class JobSpec(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A backup job as the user defines it (the catalog adds id, revision, state)."""

    name: str
    description: str = ""
    type: JobType = "full"
    content: JobContent
    target: JobTarget
    options: JobOptions = JobOptions()
    schedule: Schedule = Manual()
    """When the scheduler starts the job by itself (``docs/schedules.md``); ``manual``: never."""


# --- catalog RPCs -----------------------------------------------------------------------
class JobInfo(Message, frozen=True, kw_only=True):
    id: str
    revision: int
    """Grows by one with every change; ``JobUpdate`` must name the revision it edited."""
    enabled: bool
    spec: JobSpec
    groups: list[str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    schedule_anchor: datetime | None = None
    """When the schedule was set (creation, or the edit that changed it): ``next_run``'s anchor."""
    next_due: datetime | None = None
    """When the scheduler fires the job next; None: never (manual, spent, or disabled)."""
    last_fired: datetime | None = None
    """When the scheduler last fired it (the due time it fired for is ``last_due``)."""
    last_due: datetime | None = None


class JobCreate(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    spec: JobSpec
    enabled: bool = True
    groups: list[str] | None = None
    """User groups recorded on the job; None = the creator's (an operator's must be among
    them). They grant nothing: who sees a job follows its backup host's groups."""


class JobGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    job_id: str


class JobList(Request, frozen=True, kw_only=True):
    """Jobs in name order, ``limit`` at a time; pass the reply's ``next_after`` on."""

    actor: ActorRef = ActorRef()
    host_id: str | None = None
    after: str | None = None
    limit: int = 50
    name: str | None = None
    """Part of the name, any case."""
    enabled: bool | None = None
    platform_id: str | None = None
    """Jobs backing up VMs of this platform."""


class JobListReply(Message, frozen=True, kw_only=True):
    jobs: list[JobInfo]
    next_after: str | None = None
    """The name to pass as ``after`` for the next page; None on the last page."""


class JobUpdate(Request, frozen=True, kw_only=True):
    """Replace the definition; refused with ``stale_version`` if ``revision`` moved."""

    actor: ActorRef = ActorRef()
    job_id: str
    revision: int
    spec: JobSpec


class JobClone(Request, frozen=True, kw_only=True):
    """A copy under a new name, created disabled (it would otherwise run beside its
    original until edited)."""

    actor: ActorRef = ActorRef()
    job_id: str
    name: str


class JobDelete(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    job_id: str


class JobSetEnabled(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    job_id: str
    enabled: bool


class JobStop(Request, frozen=True, kw_only=True):
    """Stop the job's active runs, each as ``RunCancel`` does: a pending run is cancelled
    at once, a queued or running one becomes ``cancelling`` (its workers stop)."""

    actor: ActorRef = ActorRef()
    job_id: str
    reason: str = ""


class JobStopped(Message, frozen=True, kw_only=True):
    runs: list[RunInfo]
    """The runs it stopped, as they are now (empty: none was pending, queued or running)."""
