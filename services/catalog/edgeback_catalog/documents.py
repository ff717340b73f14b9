"""MongoDB document shapes of the catalog and their conversion to domain values.

The documents are their own types (``TypedDict``), never the wire messages: what is
stored can change (a field added, a secret sealed) without touching the wire, and the
reverse. Ids are strings (uuid4 hex), times are UTC ``datetime``; the only sealed
fields are the platform's keys (see ``secretbox.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from edgeback_catalog.domain import (
    BackupHost,
    CephStorage,
    Clock,
    GroupName,
    JobId,
    Platform,
    PlatformId,
    Role,
    Run,
    RunId,
    RunTransition,
    StorageId,
    User,
    UserName,
)
from edgeback_catalog.runstate import RunState
from edgeback_core.ids import BackupHostId
from edgeback_platform.templates import RbdTemplates


class PlatformDoc(TypedDict):
    _id: str
    name: str
    address: str
    port: int
    ssl: bool
    access_key_sealed: str
    access_key_masked: str
    secret_key_sealed: str
    default_host_id: str
    tags: list[str]
    groups: list[str]
    created_at: datetime
    updated_at: datetime


class StorageDoc(TypedDict):
    _id: str
    platform_id: str
    name: str
    storage_type: str
    client_id: str
    conf_path: str
    host_id: str
    pool: str
    volume_template: str
    snapshot_template: str
    instance_template: str
    rbd_client: str
    created_at: datetime


class UserDoc(TypedDict):
    _id: str
    name: str
    role: str
    groups: list[str]
    created_at: datetime


class TransitionDoc(TypedDict):
    seq: int
    from_state: str | None
    to_state: str
    request_id: str
    reason: str
    at: datetime


class RunDoc(TypedDict):
    _id: str
    job_id: str
    host_id: str
    state: str
    version: int
    created_at: datetime
    updated_at: datetime
    history: list[TransitionDoc]
    # runs started from a job (``catalog.run.start``) also carry:
    requested_by: NotRequired[str]
    idempotency_key: NotRequired[str]
    job_revision: NotRequired[int]
    backup_type: NotRequired[str]
    vm_retries: NotRequired[int]
    pool: NotRequired[dict[str, str]]
    backup_set_ids: NotRequired[list[str]]


class AuditDoc(TypedDict):
    _id: str
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    details: NotRequired[dict[str, Any]]


def utc(value: datetime) -> datetime:
    """Datetimes come back naive from some servers: they are always UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stored_clock(clock: Clock) -> Clock:
    """``clock`` at the precision BSON keeps (milliseconds), so that what a write
    returns equals what a later read gives back."""

    def now() -> datetime:
        at = clock()
        return at.replace(microsecond=at.microsecond // 1000 * 1000)

    return now


def host_of(doc: dict[str, Any]) -> BackupHost:
    return BackupHost(
        id=BackupHostId(doc["_id"]),
        hostname=doc["hostname"],
        version=doc["version"],
        capacity_bytes=int(doc["capacity_bytes"]),
        active=bool(doc["active"]),
        groups=frozenset(GroupName(g) for g in doc["groups"]),
        registered_at=utc(doc["registered_at"]),
        last_seen=utc(doc["last_seen"]),
    )


def platform_of(doc: dict[str, Any]) -> Platform:
    return Platform(
        id=PlatformId(doc["_id"]),
        name=doc["name"],
        address=doc["address"],
        port=int(doc["port"]),
        ssl=bool(doc["ssl"]),
        access_key_masked=doc["access_key_masked"],
        default_host_id=BackupHostId(doc["default_host_id"]),
        tags=tuple(doc["tags"]),
        groups=frozenset(GroupName(g) for g in doc["groups"]),
        created_at=utc(doc["created_at"]),
        updated_at=utc(doc["updated_at"]),
    )


def storage_doc(storage: CephStorage) -> StorageDoc:
    return StorageDoc(
        _id=storage.id,
        platform_id=storage.platform_id,
        name=storage.name,
        storage_type="ceph",
        client_id=storage.client_id,
        conf_path=storage.conf_path,
        host_id=storage.host_id,
        pool=storage.pool,
        volume_template=storage.templates.volume,
        snapshot_template=storage.templates.snapshot,
        instance_template=storage.templates.instance,
        rbd_client=storage.rbd_client,
        created_at=storage.created_at,
    )


def storage_of(doc: dict[str, Any]) -> CephStorage:
    return CephStorage(
        id=StorageId(doc["_id"]),
        platform_id=PlatformId(doc["platform_id"]),
        name=doc["name"],
        client_id=doc["client_id"],
        conf_path=doc["conf_path"],
        host_id=BackupHostId(doc["host_id"]),
        pool=doc["pool"],
        templates=RbdTemplates(
            volume=doc["volume_template"],
            snapshot=doc["snapshot_template"],
            instance=doc["instance_template"],
        ),
        created_at=utc(doc["created_at"]),
        rbd_client=doc.get("rbd_client", "librbd"),
    )


def user_of(doc: dict[str, Any]) -> User:
    return User(
        name=UserName(doc["name"]),
        role=Role(doc["role"]),
        groups=frozenset(GroupName(g) for g in doc["groups"]),
        created_at=utc(doc["created_at"]),
    )


def transition_doc(step: RunTransition) -> TransitionDoc:
    return TransitionDoc(
        seq=step.seq,
        from_state=None if step.from_state is None else str(step.from_state),
        to_state=str(step.to_state),
        request_id=step.request_id,
        reason=step.reason,
        at=step.at,
    )


def transition_of(doc: dict[str, Any]) -> RunTransition:
    before = doc.get("from_state")
    return RunTransition(
        seq=int(doc["seq"]),
        from_state=None if before is None else RunState(before),
        to_state=RunState(doc["to_state"]),
        request_id=doc["request_id"],
        reason=doc.get("reason", ""),
        at=utc(doc["at"]),
    )


def run_of(doc: dict[str, Any]) -> Run:
    return Run(
        id=RunId(doc["_id"]),
        job_id=JobId(doc["job_id"]),
        host_id=BackupHostId(doc["host_id"]),
        state=RunState(doc["state"]),
        version=int(doc["version"]),
        created_at=utc(doc["created_at"]),
        updated_at=utc(doc["updated_at"]),
        history=tuple(transition_of(t) for t in doc.get("history", [])),
    )
