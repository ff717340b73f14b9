"""Edge-cloud platform adapters: the ``CloudPlatform`` port, its models and HTTP client."""

from edgeback_platform.models import (
    Disk,
    DiskId,
    DiskSnapshot,
    DiskSnapshotId,
    GuestAgent,
    Host,
    HypervisorId,
    PlatformInfo,
    SnapshotId,
    Vm,
    VmId,
    VmSnapshot,
    VmState,
    VolumeId,
)
from edgeback_platform.port import CloudPlatform

__all__ = [
    "CloudPlatform",
    "Disk",
    "DiskId",
    "DiskSnapshot",
    "DiskSnapshotId",
    "GuestAgent",
    "Host",
    "HypervisorId",
    "PlatformInfo",
    "SnapshotId",
    "Vm",
    "VmId",
    "VmSnapshot",
    "VmState",
    "VolumeId",
]
