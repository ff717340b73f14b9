"""The API's own wire types: bodies, query strings and replies that are not catalog
messages. Catalog requests are used as they are (the API fills ``actor`` and the
path's fields), so their schema is written once, in ``edgeback_core.messages``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from edgeback_api.paging import Limit
from edgeback_core.messages.auth import NewPassword, TokenInfo
from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import RunStateName, UserInfo
from edgeback_core.messages.restores import RestoreStateName
from edgeback_core.messages.runs import BackupType

Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Moment = Annotated[datetime, msgspec.Meta(tz=True)]
"""A time in a query string: ISO 8601 with its zone (a bare time is refused, not guessed)."""
RunEventType = Literal[
    "RunStarted",
    "RunSkipped",
    "VmStarted",
    "RunProgress",
    "VmFinished",
    "VmSkipped",
    "VmRefused",
    "RunFinished",
    "BackupSetCreated",
]
"""The ``type`` of each run event (``edgeback_core.messages.runs.RunEvent``)."""
RestoreEventType = Literal[
    "RestoreStarted", "RestoreVmStarted", "RestoreProgress", "RestoreVmFinished", "RestoreFinished"
]
"""The ``type`` of each restore event (``edgeback_core.messages.restores.RestoreEvent``)."""


class Body(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the API's own request bodies and query strings: unknown fields refused."""


class LoginBody(Body, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Password


class Session(Message, frozen=True, kw_only=True):
    token: str
    """Send it as ``Authorization: Bearer <token>``; shown once, stored hashed."""
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme, not a secret
    expires_at: datetime | None
    user: UserInfo


class PasswordBody(Body, frozen=True, kw_only=True):
    password: NewPassword


class TokenBody(Body, frozen=True, kw_only=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ttl_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Null: the token lasts until revoked."""


class NewToken(Message, frozen=True, kw_only=True):
    token: str
    """Shown once: store it where your automation reads secrets."""
    info: TokenInfo


class StartBody(Body, frozen=True, kw_only=True):
    backup_type: BackupType | None = None
    """Override the job's backup type for this run only."""


class RunRequested(Message, frozen=True, kw_only=True):
    job_id: str
    idempotency_key: str
    """Repeat the request with this ``Idempotency-Key`` header: the same run, never two."""
    run_id: str
    """The run this start creates (it appears once the catalog took the command)."""


class Health(Message, frozen=True, kw_only=True):
    status: Literal["ok", "degraded"]
    catalog: bool


# --- query strings ---------------------------------------------------------------------
class PageQuery(Body, frozen=True, kw_only=True):
    limit: Limit = 50
    cursor: str | None = None


class HostQuery(PageQuery, frozen=True, kw_only=True):
    active: bool | None = None
    online: bool | None = None
    group: str | None = None


class PlatformQuery(PageQuery, frozen=True, kw_only=True):
    tag: str | None = None
    name: str | None = None
    """Part of the name, any case."""


class PoolQuery(PageQuery, frozen=True, kw_only=True):
    host_id: str | None = None
    node_url: str | None = None
    name: str | None = None
    """Part of the pool's name, any case."""


class JobQuery(PageQuery, frozen=True, kw_only=True):
    host_id: str | None = None
    name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """Part of the name, any case."""
    enabled: bool | None = None
    platform_id: str | None = None
    """Jobs backing up VMs of this platform."""


class RunQuery(PageQuery, frozen=True, kw_only=True):
    state: RunStateName | None = None
    backup_type: BackupType | None = None
    """The run's backup type (the job's, or the one it was started with)."""
    created_after: Moment | None = None
    """Runs created (started) at or after this time (ISO 8601 with a zone)."""
    created_before: Moment | None = None
    """Runs created before this time."""


class RunsQuery(RunQuery, frozen=True, kw_only=True):
    job_id: str | None = None
    host_id: str | None = None
    """Runs by this backup host."""


class StorageQuery(PageQuery, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """Part of the name, any case."""
    pool: str | None = None
    """The Ceph pool's name."""


class GroupQuery(PageQuery, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """Part of the name, any case."""


class RunEventQuery(PageQuery, frozen=True, kw_only=True):
    type: RunEventType | None = None
    since: Moment | None = None
    """Events at or after this time (ISO 8601 with a zone)."""


class RestoreEventQuery(PageQuery, frozen=True, kw_only=True):
    type: RestoreEventType | None = None
    since: Moment | None = None
    """Events at or after this time (ISO 8601 with a zone)."""


class BackupSetQuery(PageQuery, frozen=True, kw_only=True):
    """At least one of ``job_id``, ``vm_id``, ``run_id``."""

    job_id: str | None = None
    vm_id: str | None = None
    run_id: str | None = None
    complete: bool | None = None
    """True: restore points only."""


class UserQuery(PageQuery, frozen=True, kw_only=True):
    role: Literal["admin", "operator"] | None = None
    group: str | None = None


class AuditQuery(PageQuery, frozen=True, kw_only=True):
    resource: str | None = None
    """e.g. ``platform/<id>``, ``user/<name>``, ``job/<id>``."""
    actor: str | None = None
    """Who: a user's name (or a service's)."""
    action: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """An action (``job.created``), or a prefix ending in a dot (``job.``)."""
    since: Moment | None = None
    """Entries at or after this time (ISO 8601 with a zone)."""
    until: Moment | None = None
    """Entries before this time."""


class BrowseQuery(Body, frozen=True, kw_only=True):
    keyword: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    """Matches VM names and ids, any case."""
    host_id: str | None = None
    """Keep one physical host of the platform."""


class RestorePointQuery(PageQuery, frozen=True, kw_only=True):
    vm: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    """Part of the VM's name or id, any case."""
    vm_id: str | None = None
    pool: str | None = None
    """The pool's name."""
    node_url: str | None = None
    """With ``pool``: only that pool of this storage node."""
    taken_after: datetime | None = None
    """Points taken at or after this time (ISO 8601 with a zone)."""
    taken_before: datetime | None = None


class RestoreQuery(PageQuery, frozen=True, kw_only=True):
    state: RestoreStateName | None = None
    host_id: str | None = None
    """Restores by this backup host's workers."""
    backup_set_id: str | None = None
    """Restores of this restore point."""
    created_after: Moment | None = None
    """Restores created at or after this time (ISO 8601 with a zone)."""
    created_before: Moment | None = None


class RunStopBody(Body, frozen=True, kw_only=True):
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class LiveQuery(Body, frozen=True, kw_only=True):
    """``Last-Event-ID`` (header) or ``last_event_id``: resume after that event."""

    last_event_id: str | None = None
