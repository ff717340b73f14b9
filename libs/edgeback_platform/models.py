"""What the edge-cloud platform tells us about its hosts, VMs, disks and snapshots.

These frozen ``msgspec`` structs are both the domain values handed out by the
:class:`~edgeback_platform.port.CloudPlatform` port and the JSON shapes of the platform
API (``docs/platform-api.md``): the API is our own contract, so one type serves both.
New fields always get defaults so older emulators and clients keep decoding.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NewType

import msgspec

HypervisorId = NewType("HypervisorId", str)
VmId = NewType("VmId", str)
DiskId = NewType("DiskId", str)
VolumeId = NewType("VolumeId", str)
SnapshotId = NewType("SnapshotId", str)
"""A VM-level snapshot (one per ``create_snapshot`` call)."""
DiskSnapshotId = NewType("DiskSnapshotId", str)
"""One disk's part of a VM snapshot; the RBD snapshot name comes from it (``{snapshot_id}``)."""

VmState = Literal["running", "stopped", "suspended", "paused", "shelved"]
StorageKind = Literal["ceph", "other"]
HostStatus = Literal["up", "down"]

VM_STATES: tuple[VmState, ...] = ("running", "stopped", "suspended", "paused", "shelved")


class Host(msgspec.Struct, frozen=True, kw_only=True):
    """A physical machine of the edge cloud that runs VMs."""

    id: HypervisorId
    name: str
    address: str = ""
    status: HostStatus = "up"


class GuestAgent(msgspec.Struct, frozen=True, kw_only=True):
    """The QEMU guest agent inside a VM: needed for fs freeze/thaw (consistent snapshots)."""

    installed: bool = False
    running: bool = False


class Disk(msgspec.Struct, frozen=True, kw_only=True):
    """One virtual disk of a VM.

    ``volume_id`` is None for the instance's own system disk, whose RBD image is named by
    the instance template (``{instance_id}_disk``); volumes use the volume template.
    """

    id: DiskId
    volume_id: VolumeId | None = None
    size: int
    """Bytes."""
    storage: StorageKind = "ceph"
    pool: str = ""
    """Ceph pool holding the image; empty when not on Ceph."""
    boot: bool = False
    device_index: int = 0
    """Attachment order (0 = first device, e.g. vda)."""


class Vm(msgspec.Struct, frozen=True, kw_only=True):
    id: VmId
    name: str
    host_id: HypervisorId
    state: VmState
    guest_agent: GuestAgent = GuestAgent()
    disks: tuple[Disk, ...] = ()

    @property
    def on_ceph(self) -> bool:
        """True when every disk lives on Ceph (the only storage we can back up)."""
        return bool(self.disks) and all(d.storage == "ceph" for d in self.disks)

    @property
    def can_quiesce(self) -> bool:
        """True when a snapshot now would freeze the guest file systems."""
        return self.state == "running" and self.guest_agent.running


class DiskSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    disk_id: DiskId
    snapshot_id: DiskSnapshotId


class VmSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A crash- or application-consistent snapshot of every disk of one VM."""

    id: SnapshotId
    vm_id: VmId
    disks: tuple[DiskSnapshot, ...]
    frozen: bool
    """True when the guest file systems were frozen (guest agent) while it was taken."""
    created: datetime

    def for_disk(self, disk_id: DiskId) -> DiskSnapshotId:
        for part in self.disks:
            if part.disk_id == disk_id:
                return part.snapshot_id
        raise KeyError(disk_id)


class PlatformInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Answer of the signed no-op call used to check address and keys."""

    name: str
    version: str
    access_key: str


# Envelopes of the HTTP API (see docs/platform-api.md).


class HostList(msgspec.Struct, frozen=True, kw_only=True):
    hosts: tuple[Host, ...]


class VmList(msgspec.Struct, frozen=True, kw_only=True):
    vms: tuple[Vm, ...]


class SnapshotList(msgspec.Struct, frozen=True, kw_only=True):
    snapshots: tuple[VmSnapshot, ...]


class SnapshotRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    quiesce: bool = True


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str = ""


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorDetail
