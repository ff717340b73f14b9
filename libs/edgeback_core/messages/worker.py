"""Wire structs of the worker's RPCs: the checks and listings a backup host runs for the catalog.

Each backup host serves its own names, ``worker.<host_id>.<resource>.<verb>``, because
only that host's network reaches the platform and the Ceph cluster the admin chose it
for. Requests refuse unknown fields. A platform request carries the Secret Key in
clear inside its JSON body (the worker must sign with it): it rides the broker like
any RPC body, so the broker link must be trusted or TLS (``amqps://``); nobody logs it.
"""

from __future__ import annotations

from typing import Literal

from edgeback_core.ids import BackupHostId
from edgeback_core.messages.base import Message

VmStateName = Literal["running", "stopped", "suspended", "paused", "shelved"]


def platform_check_rpc(host_id: BackupHostId) -> str:
    return f"worker.{host_id}.platform.check"


def platform_inventory_rpc(host_id: BackupHostId) -> str:
    return f"worker.{host_id}.platform.inventory"


def storage_check_rpc(host_id: BackupHostId) -> str:
    return f"worker.{host_id}.storage.check"


def pool_status_rpc(host_id: BackupHostId) -> str:
    return f"worker.{host_id}.pool.status"


class Request(Message, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of worker RPC requests."""


class PlatformAccess(Request, frozen=True, kw_only=True):
    """How to reach and sign for one platform (``secret_key`` in clear: see above)."""

    address: str
    port: int = 30188
    ssl: bool = True
    verify_ssl: bool = True
    access_key: str
    secret_key: str


# --- worker.<host>.platform.check --------------------------------------------------------
class PlatformCheck(Request, frozen=True, kw_only=True):
    access: PlatformAccess
    budget_s: float = 15.0
    """The worker answers within this (a refusal at worst); callers wait a little longer."""


class PlatformChecked(Message, frozen=True, kw_only=True):
    """The platform answered a signed call: what it says about itself."""

    name: str
    version: str
    checked_from: str
    """The backup host that made the call."""
    elapsed_ms: int = 0


# --- worker.<host>.platform.inventory ----------------------------------------------------
class PlatformInventoryRequest(Request, frozen=True, kw_only=True):
    """Hosts, their VMs and disks; ``keyword`` matches VM name or id (any case),
    ``host_id`` keeps one physical host, a platform ``HypervisorId`` (both optional)."""

    access: PlatformAccess
    keyword: str | None = None
    host_id: str | None = None
    budget_s: float = 40.0


class InventoryDisk(Message, frozen=True, kw_only=True):
    id: str
    volume_id: str | None = None
    size: int
    storage: str
    pool: str = ""
    boot: bool = False


class InventoryVm(Message, frozen=True, kw_only=True):
    id: str
    name: str
    state: VmStateName
    guest_agent_installed: bool = False
    guest_agent_running: bool = False
    on_ceph: bool
    """Every disk on Ceph: only such a VM can be backed up."""
    disks: list[InventoryDisk] = []


class InventoryHost(Message, frozen=True, kw_only=True):
    id: str
    name: str
    address: str = ""
    status: str = "up"
    vms: list[InventoryVm] = []


class PlatformInventory(Message, frozen=True, kw_only=True):
    """Physical hosts with their (matching) VMs; a host without a match is left out
    when a keyword was given."""

    hosts: list[InventoryHost]
    keyword: str | None = None


# --- worker.<host>.storage.check ---------------------------------------------------------
class StorageCheck(Request, frozen=True, kw_only=True):
    conf_path: str
    client_id: str = "admin"
    pool: str
    volume_template: str = "{volume_id}"
    snapshot_template: str = "{snapshot_id}"
    instance_template: str = "{instance_id}_disk"


class StorageChecked(Message, frozen=True, kw_only=True):
    """The cluster answered from the backup host and the pool exists."""

    pool: str
    cluster_total_bytes: int
    cluster_avail_bytes: int
    checked_from: str
    elapsed_ms: int = 0


# --- worker.<host>.pool.status -----------------------------------------------------------
class PoolStatusCheck(Request, frozen=True, kw_only=True):
    """Ask the storage node for one pool's status with this host's own token for it
    (``<pool>.token`` in the worker's pool access directory)."""

    node_url: str
    pool: str


class PoolSpace(Message, frozen=True, kw_only=True):
    """A pool's space and counts as its storage node reports them. Capacity: the pool's
    quota when it has one, else the node filesystem's size; free: what still fits."""

    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    quota_bytes: int | None = None
    chunks: int = 0
    manifests: int = 0
    stored_bytes: int = 0
    logical_bytes: int = 0
    dedup_ratio: float | None = None


class PoolStatusChecked(PoolSpace, frozen=True, kw_only=True):
    """The node's answer for the pool, as this backup host got it."""

    pool: str
    kind: str
    encrypted: bool
    checked_from: str
    elapsed_ms: int = 0
