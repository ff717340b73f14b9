"""Wire structs of the catalog: its RPC requests and replies, and the host heartbeat.

RPC requests refuse unknown fields (``forbid_unknown_fields``): a misspelt option is
an error, never silently ignored. The catalog authorizes by the broker user that
sends a request; its ``actor`` only names the end user the API speaks for (services
and backup hosts leave it out), see ``ActorRef`` and ``docs/catalog.md``.
The heartbeat is an event and stays tolerant so newer workers talk to older catalogs.
RPC names (``catalog.<resource>.<verb>``) are in ``catalog_rpc``; the heartbeat's
routing key is ``edgeback_core.bus.topology.HOST_HEARTBEAT``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from edgeback_core.messages.base import Message
from edgeback_core.messages.worker import PoolSpace

RoleName = Literal["admin", "operator", "service"]
RbdClient = Literal["librbd", "krbd"]
"""How a platform's hypervisors open RBD images (QEMU's librbd driver, or the kernel's)."""
RunStateName = Literal[
    "pending",
    "queued",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "partially_succeeded",
    "cancelled",
]


class Request(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of catalog RPC requests."""


class ActorRef(Request, frozen=True, kw_only=True):
    """Who a request is for, beside the broker user that sends it (which the catalog
    authorizes by). ``user``: the end user the API speaks for (the catalog loads their
    role and groups; only the API's broker user may name one); None: the caller itself,
    a service or a backup host. ``role`` is never believed: a request carrying one is
    refused (``permission_denied``) and audited."""

    user: str | None = None
    role: RoleName | None = None


class Done(Message, frozen=True, kw_only=True):
    """Reply of a request that returns nothing."""

    ok: bool = True


class HostHeartbeat(Message, frozen=True, kw_only=True):
    """Event: a worker's host is alive (routing key ``host.event.heartbeat``)."""

    host_id: str
    hostname: str
    version: str = ""
    capacity_bytes: int = 0


# --- backup hosts ---------------------------------------------------------------------
class HostInfo(Message, frozen=True, kw_only=True):
    id: str
    hostname: str
    version: str
    capacity_bytes: int
    active: bool
    online: bool
    groups: list[str]
    registered_at: datetime
    last_seen: datetime


class HostActivate(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    host_id: str


class HostAuthorize(Request, frozen=True, kw_only=True):
    """Replace the user groups allowed to use the host."""

    actor: ActorRef = ActorRef()
    host_id: str
    groups: list[str]


HostIds = Annotated[list[str], msgspec.Meta(min_length=1, description="at least one")]


class HostActivateMany(Request, frozen=True, kw_only=True):
    """Activate several backup hosts: all or none (an unknown id changes nothing)."""

    actor: ActorRef = ActorRef()
    host_ids: HostIds


class HostAuthorizeMany(Request, frozen=True, kw_only=True):
    """Replace the user groups allowed on several backup hosts: all or none."""

    actor: ActorRef = ActorRef()
    host_ids: HostIds
    groups: list[str]


class HostGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    host_id: str


class HostList(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()


class HostListReply(Message, frozen=True, kw_only=True):
    hosts: list[HostInfo]


# --- platforms ------------------------------------------------------------------------
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class PlatformInfo(Message, frozen=True, kw_only=True):
    id: str
    name: str
    address: str
    port: int
    ssl: bool
    access_key: str  # masked, e.g. "AK…1234"; the secret key is never shown
    default_host_id: str
    tags: list[str]
    groups: list[str]
    created_at: datetime
    updated_at: datetime


class PlatformRegister(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    name: str
    address: str
    port: Port = 30188
    ssl: bool = True
    access_key: str
    secret_key: str
    default_host_id: str
    tags: list[str] = []
    groups: list[str] = []


class PlatformRename(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    platform_id: str
    name: str


class PlatformUpdate(Request, frozen=True, kw_only=True):
    """Change settings; a field left out (null) stays as it is."""

    actor: ActorRef = ActorRef()
    platform_id: str
    address: str | None = None
    port: Port | None = None
    ssl: bool | None = None
    access_key: str | None = None
    secret_key: str | None = None
    default_host_id: str | None = None
    groups: list[str] | None = None


class PlatformSetTags(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    platform_id: str
    tags: list[str]


class PlatformUnregister(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    platform_id: str


class PlatformGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    platform_id: str


class PlatformList(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    tag: str | None = None


class PlatformListReply(Message, frozen=True, kw_only=True):
    platforms: list[PlatformInfo]


class PlatformCredentialsGet(Request, frozen=True, kw_only=True):
    """Backup hosts only: the keys in clear, to call the platform (its default backup
    host or the host of one of its jobs)."""

    actor: ActorRef = ActorRef()
    platform_id: str


class PlatformCredentials(Message, frozen=True, kw_only=True):
    platform_id: str
    access_key: str
    secret_key: str


# --- Ceph storages --------------------------------------------------------------------
class StorageInfo(Message, frozen=True, kw_only=True):
    id: str
    platform_id: str
    name: str
    storage_type: Literal["ceph"] = "ceph"
    client_id: str
    conf_path: str
    host_id: str
    pool: str
    volume_template: str
    snapshot_template: str
    instance_template: str
    rbd_client: RbdClient = "librbd"
    created_at: datetime


class StorageAdd(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    platform_id: str
    name: str
    storage_type: Literal["ceph"] = "ceph"
    host_id: str
    pool: str
    client_id: str = "admin"
    conf_path: str = "/etc/ceph/ceph.conf"
    volume_template: str = "{volume_id}"
    snapshot_template: str = "{snapshot_id}"
    instance_template: str = "{instance_id}_disk"
    rbd_client: RbdClient = "librbd"
    """How the platform's hypervisors open this storage's images: ``librbd`` (QEMU's
    rbd driver) or ``krbd`` (the kernel module, ``rbd map``). Instant restore needs
    librbd: krbd cannot open an image under live migration."""


class StorageRemove(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    storage_id: str


class StorageGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    storage_id: str


class StorageList(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    platform_id: str
    name: str | None = None
    """Part of the storage's name, any case."""
    pool: str | None = None
    """The Ceph pool's name."""


class StorageListReply(Message, frozen=True, kw_only=True):
    storages: list[StorageInfo]


# --- storage pools --------------------------------------------------------------------
Description = Annotated[str, msgspec.Meta(max_length=500)]


class PoolFigures(PoolSpace, frozen=True, kw_only=True):
    """The pool's status as the storage node last reported it to the pool's backup host."""

    checked_at: datetime


class PoolCheckFailure(Message, frozen=True, kw_only=True):
    """Why the last status check failed (``code``: the worker's or the catalog's)."""

    code: str
    message: str
    at: datetime


class PoolInfo(Message, frozen=True, kw_only=True):
    id: str
    name: str
    """The pool's name on its storage node."""
    node_url: str
    host_id: str
    """The backup host whose workers hold the pool's access files and reach the node."""
    description: str
    kind: str
    encrypted: bool
    created_at: datetime
    created_by: str
    status: PoolFigures
    """The last successful check (registration's at first)."""
    last_error: PoolCheckFailure | None = None
    """The last check's failure, when it failed (``status`` keeps the figures before it)."""


class PoolRegister(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    name: str
    node_url: str
    host_id: str
    description: Description = ""


class PoolList(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    host_id: str | None = None
    node_url: str | None = None


class PoolListReply(Message, frozen=True, kw_only=True):
    pools: list[PoolInfo]


class PoolGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    pool_id: str


class PoolEdit(Request, frozen=True, kw_only=True):
    """Change a pool's description or backup host; a field left out (null) stays."""

    actor: ActorRef = ActorRef()
    pool_id: str
    description: Description | None = None
    host_id: str | None = None


class PoolDelete(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    pool_id: str


class PoolRefresh(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    pool_id: str


# --- users and groups -----------------------------------------------------------------
class GroupInfo(Message, frozen=True, kw_only=True):
    name: str
    description: str
    created_at: datetime


class GroupCreate(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    name: str
    description: str = ""


class GroupList(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    name: str | None = None
    """Part of the group's name, any case."""


class GroupListReply(Message, frozen=True, kw_only=True):
    groups: list[GroupInfo]


class UserInfo(Message, frozen=True, kw_only=True):
    name: str
    role: RoleName
    groups: list[str]
    created_at: datetime


class UserCreate(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    name: str
    role: Literal["admin", "operator"]
    groups: list[str] = []


class UserSetGroups(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    name: str
    groups: list[str]


class UserGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    name: str


# --- runs -----------------------------------------------------------------------------
class RunStep(Message, frozen=True, kw_only=True):
    seq: int
    from_state: RunStateName | None
    to_state: RunStateName
    request_id: str
    reason: str
    at: datetime


class RunInfo(Message, frozen=True, kw_only=True):
    id: str
    job_id: str
    host_id: str
    state: RunStateName
    version: int
    created_at: datetime
    updated_at: datetime
    history: list[RunStep] = []


class RunCreate(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    job_id: str
    host_id: str
    run_id: str | None = None


class RunTransition(Request, frozen=True, kw_only=True):
    """Move a run to ``target``; ``request_id`` makes a redelivery harmless, and
    ``expected_version`` (optional) refuses the change if the run moved meanwhile."""

    actor: ActorRef = ActorRef()
    run_id: str
    target: RunStateName
    request_id: str
    reason: str = ""
    expected_version: int | None = None


class RunTransitionReply(Message, frozen=True, kw_only=True):
    run: RunInfo
    applied: bool


class RunGet(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    run_id: str


# --- audit ----------------------------------------------------------------------------
class AuditEntry(Message, frozen=True, kw_only=True):
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    id: str = ""
    """Time-ordered; pass the last one seen as ``AuditList.before`` for older entries."""


class AuditList(Request, frozen=True, kw_only=True):
    actor: ActorRef = ActorRef()
    resource: str | None = None
    limit: int = 100
    before: str | None = None
    """Only entries older than this entry id."""
    by: str | None = None
    """Only what this user (or service) did."""
    action: str | None = None
    """An action (``job.created``), or every action under a prefix ending in a dot (``job.``)."""
    since: datetime | None = None
    """Entries at or after this time."""
    until: datetime | None = None
    """Entries before this time."""


class AuditListReply(Message, frozen=True, kw_only=True):
    entries: list[AuditEntry]


# --- browsing a platform (reply: edgeback_core.messages.worker.PlatformInventory) -------
class PlatformBrowse(Request, frozen=True, kw_only=True):
    """Physical hosts → VMs → disks of a platform, listed by its default backup host;
    ``keyword`` matches VM names and ids (any case), ``host_id`` keeps one physical host
    (a platform ``HypervisorId``, not a backup host)."""

    actor: ActorRef = ActorRef()
    platform_id: str
    keyword: str | None = None
    host_id: str | None = None
