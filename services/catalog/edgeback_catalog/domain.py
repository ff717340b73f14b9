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
from edgeback_core.errors import PermissionDeniedError
from edgeback_core.ids import BackupHostId
from edgeback_platform.templates import RbdTemplates

PlatformId = NewType("PlatformId", str)
StorageId = NewType("StorageId", str)
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


def utc_now() -> datetime:
    """The production clock; tests inject their own."""
    return datetime.now(UTC)
