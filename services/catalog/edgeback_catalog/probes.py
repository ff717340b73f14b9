"""How the catalog asks a backup host to check a platform, a Ceph storage or a storage
pool, or to list a platform's content: the worker RPCs ``worker.<host_id>.*`` over the bus.

The catalog never reaches a platform or a cluster itself (the backup host's network
does), and never imports the worker: :class:`WorkerProbe` is a bus client. The
worker's own refusals (``platform_auth_failed``, ``rbd_pool_not_found``, ...) travel
back unchanged; a host whose worker does not answer at all becomes
``backup_host_unreachable``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import msgspec

from edgeback_core.bus.port import Bus
from edgeback_core.errors import BackupHostUnreachableError, DeadlineExceededError, UnroutableError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import worker as w

R = TypeVar("R", bound=msgspec.Struct)

STORAGE_CHECK_TIMEOUT_S = 30.0
"""Above the worker's own bounds: conf read, connect and two calls of 5 s each by default
(a pool's status: two attempts of 10 s at most)."""
_MARGIN_S = 5.0
"""Added to a platform request's budget, so the worker's answer (even a refusal) arrives
before the catalog gives up on the host."""


class ResourceProbe(Protocol):
    """What the catalog needs from a backup host before storing resources it names."""

    async def check_platform(
        self, host_id: BackupHostId, check: w.PlatformCheck
    ) -> w.PlatformChecked:
        """Raise the platform's refusal (auth, unreachable, TLS) or return its info."""
        ...

    async def check_storage(self, host_id: BackupHostId, check: w.StorageCheck) -> w.StorageChecked:
        """Raise why the host cannot use the storage, or return the cluster's space."""
        ...

    async def inventory(
        self, host_id: BackupHostId, request: w.PlatformInventoryRequest
    ) -> w.PlatformInventory: ...

    async def check_pool(
        self, host_id: BackupHostId, check: w.PoolStatusCheck
    ) -> w.PoolStatusChecked:
        """Raise why the host cannot use the pool, or return the node's status of it."""
        ...


class WorkerProbe:
    """:class:`ResourceProbe` over the bus: calls the workers of the named host."""

    def __init__(self, bus: Bus, *, storage_timeout_s: float = STORAGE_CHECK_TIMEOUT_S) -> None:
        self._bus = bus
        self._storage_timeout_s = storage_timeout_s

    async def check_platform(
        self, host_id: BackupHostId, check: w.PlatformCheck
    ) -> w.PlatformChecked:
        timeout = check.budget_s + _MARGIN_S
        rpc = w.platform_check_rpc(host_id)
        return await self._call(host_id, rpc, check, w.PlatformChecked, timeout)

    async def check_storage(self, host_id: BackupHostId, check: w.StorageCheck) -> w.StorageChecked:
        rpc = w.storage_check_rpc(host_id)
        return await self._call(host_id, rpc, check, w.StorageChecked, self._storage_timeout_s)

    async def inventory(
        self, host_id: BackupHostId, request: w.PlatformInventoryRequest
    ) -> w.PlatformInventory:
        timeout = request.budget_s + _MARGIN_S
        rpc = w.platform_inventory_rpc(host_id)
        return await self._call(host_id, rpc, request, w.PlatformInventory, timeout)

    async def check_pool(
        self, host_id: BackupHostId, check: w.PoolStatusCheck
    ) -> w.PoolStatusChecked:
        rpc = w.pool_status_rpc(host_id)
        return await self._call(host_id, rpc, check, w.PoolStatusChecked, self._storage_timeout_s)

    async def _call(
        self,
        host_id: BackupHostId,
        rpc: str,
        request: msgspec.Struct,
        reply: type[R],
        limit_s: float,
    ) -> R:
        try:
            return await self._bus.call(rpc, request, reply, timeout=limit_s)
        except UnroutableError as exc:
            raise BackupHostUnreachableError(
                f"backup host {host_id} has no worker running (nothing serves {rpc})",
                host_id=host_id,
            ) from exc
        except DeadlineExceededError as exc:
            raise BackupHostUnreachableError(
                f"backup host {host_id} did not answer {rpc} within {limit_s:.0f}s",
                host_id=host_id,
            ) from exc
