"""Domain values of the catalog: resources, who asks, and what each may see.

Frozen dataclasses, independent of both the wire (``edgeback_core.messages.catalog``)
and the database (``documents.py``). Visibility: every resource carries the user
groups it is authorized for; an admin (or a service) sees everything, an operator
only what shares a group with them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NewType

from edgeback_catalog.runstate import RunState
from edgeback_catalog.vmtaskstate import VmTaskState
from edgeback_core.errors import PermissionDeniedError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages.backups import FailedDisk
from edgeback_core.messages.jobs import JobSpec, PoolRef
from edgeback_core.messages.runs import DiskStats, VmRef
from edgeback_platform.templates import RbdTemplates

PlatformId = NewType("PlatformId", str)
StorageId = NewType("StorageId", str)
PoolId = NewType("PoolId", str)
JobId = NewType("JobId", str)
RunId = NewType("RunId", str)
UserName = NewType("UserName", str)
GroupName = NewType("GroupName", str)

Clock = Callable[[], datetime]

DEFAULT_PLATFORM_PORT = 30188
DEFAULT_CEPH_CLIENT = "admin"
DEFAULT_CEPH_CONF = "/etc/ceph/ceph.conf"


class Role(enum.StrEnum):
    ADMIN = "admin"  # installs, registers resources, authorizes groups
    OPERATOR = "operator"  # runs backup and restore jobs on what its groups may see
    SERVICE = "service"  # another edgeback service (worker, scheduler) over the bus


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who asks. The API resolves it from a bearer token; services act as ``service``."""

    name: str
    role: Role
    groups: frozenset[GroupName] = frozenset()

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.ADMIN, Role.SERVICE)

    def can_see(self, groups: Collection[GroupName]) -> bool:
        """Whether a resource authorized for ``groups`` is visible (a job's backup host)."""
        return self.sees_everything or not self.groups.isdisjoint(groups)

    def require_admin(self, action: str) -> None:
        if self.role not in (Role.ADMIN, Role.SERVICE):
            raise PermissionDeniedError(f"{action} needs the admin role", actor=self.name)

    def require_service(self, action: str) -> None:
        if self.role is not Role.SERVICE:
            raise PermissionDeniedError(f"{action} is reserved to edgeback services")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupHost:
    id: BackupHostId
    hostname: str
    version: str
    capacity_bytes: int
    active: bool
    groups: frozenset[GroupName]
    registered_at: datetime
    last_seen: datetime

    def online(self, now: datetime, timeout: timedelta) -> bool:
        """Online while its last heartbeat is younger than ``timeout``."""
        return now - self.last_seen < timeout


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    id: PlatformId
    name: str
    address: str
    port: int
    ssl: bool
    access_key_masked: str
    default_host_id: BackupHostId
    tags: tuple[str, ...]
    groups: frozenset[GroupName]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformCredentials:
    """The platform's keys in clear: only for services that call the platform."""

    platform_id: PlatformId
    access_key: str
    secret_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CephStorage:
    id: StorageId
    platform_id: PlatformId
    name: str
    client_id: str
    conf_path: str
    host_id: BackupHostId
    pool: str
    templates: RbdTemplates
    created_at: datetime
    rbd_client: str = "librbd"


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolFigures:
    """A pool's status as its storage node reported it (through the pool's backup host)."""

    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    quota_bytes: int | None = None
    chunks: int = 0
    manifests: int = 0
    stored_bytes: int = 0
    logical_bytes: int = 0
    dedup_ratio: float | None = None
    checked_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolCheckFailure:
    code: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredPool:
    """A storage pool on a storage node, registered with the backup host that uses it.
    Visible to whoever sees that backup host."""

    id: PoolId
    name: str
    node_url: str
    host_id: BackupHostId
    description: str
    kind: str
    encrypted: bool
    created_at: datetime
    created_by: str
    status: PoolFigures
    last_error: PoolCheckFailure | None = None

    @property
    def ref(self) -> PoolRef:
        return PoolRef(node_url=self.node_url, name=self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    name: UserName
    role: Role
    groups: frozenset[GroupName]
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    name: GroupName
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTransition:
    """One applied transition of a run: its place in the history and why."""

    seq: int
    from_state: RunState | None
    to_state: RunState
    request_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: RunId
    job_id: JobId
    host_id: BackupHostId
    state: RunState
    version: int
    created_at: datetime
    updated_at: datetime
    history: tuple[RunTransition, ...] = field(default=())


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A saved backup job. ``spec`` is the user's definition (the versioned wire value,
    kept whole so that what was saved reads back exactly); ``revision`` grows with each
    edit of it, ``active_runs`` lists the runs started and not yet ended. The schedule's
    state: ``schedule_anchor`` (when it was set), ``next_due`` (None: never),
    ``last_due`` / ``last_fired`` (the slot the scheduler fired last, and when)."""

    id: JobId
    revision: int
    enabled: bool
    spec: JobSpec
    groups: frozenset[GroupName]
    created_by: str
    created_at: datetime
    updated_at: datetime
    active_runs: tuple[RunId, ...] = ()
    schedule_anchor: datetime | None = None
    next_due: datetime | None = None
    last_due: datetime | None = None
    last_fired: datetime | None = None

    @property
    def host_id(self) -> BackupHostId:
        return BackupHostId(self.spec.target.host_id)

    @property
    def platform_ids(self) -> list[PlatformId]:
        return sorted({PlatformId(sel.platform_id) for sel in self.spec.content.vms})


@dataclass(frozen=True, slots=True, kw_only=True)
class VmTask:
    """One VM of a run. ``results`` keeps how each finished attempt ended."""

    run_id: RunId
    job_id: JobId
    vm: VmRef
    state: VmTaskState
    attempt: int
    code: str = ""
    message: str = ""
    worker_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failed_disks: tuple[FailedDisk, ...] = ()
    results: dict[int, tuple[VmTaskState, str]] = field(default_factory=dict)
    backup_set_id: str | None = None
    claimed_until: datetime | None = None
    retrying: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupSet:
    """The restore point of one VM made by one run."""

    id: str
    run_id: RunId
    job_id: JobId
    vm: VmRef
    backup_type: str
    pool: PoolRef
    taken_at: datetime
    base_backup_set_id: str | None
    complete: bool
    disk_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskVersion:
    """One disk of a backup set: its manifest in the pool and what backing it up cost."""

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


def utc_now() -> datetime:
    """The production clock; tests inject their own."""
    return datetime.now(UTC)
