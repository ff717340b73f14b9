"""The port every cloud platform adapter implements (the edge-cloud HTTP client, fakes).

Workers and the catalog depend on this protocol only. Adapters raise edgeback errors:
:class:`~edgeback_core.errors.PlatformAuthError` for refused keys,
:class:`~edgeback_core.errors.NotFoundError` for unknown ids,
:class:`~edgeback_core.errors.UnavailableError` when the platform cannot be reached,
:class:`~edgeback_core.errors.ConflictError` when the VM's state forbids the action.
"""

from __future__ import annotations

from typing import Protocol

from edgeback_platform.models import (
    Host,
    HypervisorId,
    PlatformInfo,
    SnapshotId,
    Vm,
    VmId,
    VmSnapshot,
)


class CloudPlatform(Protocol):
    async def check(self) -> PlatformInfo:
        """A signed no-op call: proves address, port, TLS and keys all work."""
        ...

    async def list_hosts(self) -> list[Host]: ...

    async def list_vms(
        self, host_id: HypervisorId | None, *, keyword: str | None = None
    ) -> list[Vm]:
        """VMs of one host (all hosts when None); ``keyword`` matches name or id, any case."""
        ...

    async def get_vm(self, vm_id: VmId) -> Vm: ...

    async def create_snapshot(
        self, vm_id: VmId, *, quiesce: bool, idempotency_key: str | None = None
    ) -> VmSnapshot:
        """Snapshot every disk of the VM at once.

        With ``quiesce`` the guest file systems are frozen around the snapshot when the
        guest agent runs; ``VmSnapshot.frozen`` tells whether that happened. A repeated
        ``idempotency_key`` answers with the snapshot made the first time.
        """
        ...

    async def list_snapshots(self, vm_id: VmId) -> list[VmSnapshot]: ...

    async def delete_snapshot(self, vm_id: VmId, snapshot_id: SnapshotId) -> None: ...

    async def start_vm(self, vm_id: VmId) -> Vm: ...

    async def stop_vm(self, vm_id: VmId) -> Vm: ...
