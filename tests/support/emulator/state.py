"""The emulated edge cloud's state: hosts, VMs, snapshots and an event log, in one JSON file.

The file is written by ``seed`` and read (and rewritten after every change) by ``serve``,
so a restarted emulator keeps its VMs and snapshots. Writes go to a temp file that is
renamed over the old one, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from edgeback_platform.models import Disk, Host, HypervisorId, SnapshotId, Vm, VmId, VmSnapshot

EventKind = Literal[
    "fs_freeze",
    "fs_thaw",
    "snapshot_created",
    "snapshot_deleted",
    "vm_started",
    "vm_stopped",
]


class CephTarget(msgspec.Struct, frozen=True, kw_only=True):
    """The Ceph pool behind the emulated cloud and its RBD name templates."""

    conf: str
    pool: str = "rbd"
    client_id: str = "admin"
    volume_template: str = "{volume_id}"
    snapshot_template: str = "{snapshot_id}"
    instance_template: str = "{instance_id}_disk"

    def image_name(self, vm_id: VmId, disk: Disk) -> str | None:
        """The RBD image of ``disk``, or None when the disk is not on Ceph."""
        if disk.storage != "ceph":
            return None
        if disk.volume_id is None:
            return self.instance_template.format(instance_id=vm_id)
        return self.volume_template.format(volume_id=disk.volume_id)

    def snap_name(self, snapshot_id: str) -> str:
        return self.snapshot_template.format(snapshot_id=snapshot_id)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: datetime
    kind: EventKind
    vm_id: VmId
    snapshot_id: SnapshotId | None = None


class EmulatorState(msgspec.Struct, kw_only=True):
    ceph: CephTarget
    hosts: list[Host] = msgspec.field(default_factory=list)
    vms: list[Vm] = msgspec.field(default_factory=list)
    snapshots: list[VmSnapshot] = msgspec.field(default_factory=list)
    events: list[Event] = msgspec.field(default_factory=list)

    def host(self, host_id: HypervisorId) -> Host | None:
        return next((h for h in self.hosts if h.id == host_id), None)

    def vm(self, vm_id: VmId) -> Vm | None:
        return next((v for v in self.vms if v.id == vm_id), None)

    def replace_vm(self, vm: Vm) -> None:
        self.vms = [vm if v.id == vm.id else v for v in self.vms]

    def snapshot(self, vm_id: VmId, snapshot_id: SnapshotId) -> VmSnapshot | None:
        return next((s for s in self.snapshots if s.id == snapshot_id and s.vm_id == vm_id), None)

    def record(self, kind: EventKind, vm_id: VmId, snapshot_id: SnapshotId | None = None) -> Event:
        event = Event(
            seq=len(self.events) + 1,
            at=datetime.now(UTC),
            kind=kind,
            vm_id=vm_id,
            snapshot_id=snapshot_id,
        )
        self.events.append(event)
        return event


def load(path: Path) -> EmulatorState:
    return msgspec.json.decode(path.read_bytes(), type=EmulatorState)


def save(state: EmulatorState, path: Path) -> None:
    data = msgspec.json.format(msgspec.json.encode(state), indent=2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
