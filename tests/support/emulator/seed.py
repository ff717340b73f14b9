"""Seed an emulated edge cloud: N VMs over a few hosts, their disks real RBD images.

VMs cycle through profiles that cover what backup and restore must handle: every VM
state, guest agent running / installed but stopped / absent, one to three disks, and a
VM on non-Ceph storage; or, for runs that measure a fleet, all of them eligible. Disk
content is part sparse, part written zeros, part log-like text and part random, so
dedup, compression and sparse detection all have work.
"""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.support.emulator.ceph import CephImages
from tests.support.emulator.state import CephTarget, EmulatorState, save

from edgeback_platform.models import (
    Disk,
    DiskId,
    GuestAgent,
    Host,
    HypervisorId,
    StorageKind,
    Vm,
    VmId,
    VmState,
    VolumeId,
)

MIB = 1024 * 1024
_NAMES = ("web", "db", "cache", "mq", "app", "files", "dns", "build", "mail", "erp")


@dataclass(frozen=True, slots=True)
class _Profile:
    state: VmState
    agent: GuestAgent
    storage: StorageKind = "ceph"


_PROFILES = (
    _Profile("running", GuestAgent(installed=True, running=True)),
    _Profile("running", GuestAgent(installed=True, running=False)),
    _Profile("stopped", GuestAgent(installed=True, running=False)),
    _Profile("running", GuestAgent(installed=False, running=False)),
    _Profile("suspended", GuestAgent(installed=True, running=False)),
    _Profile("paused", GuestAgent(installed=True, running=False)),
    _Profile("shelved", GuestAgent(installed=True, running=False)),
    _Profile("running", GuestAgent(installed=True, running=True), storage="other"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedPlan:
    vms: int
    hosts: int = 0
    """0: one host per four VMs, at least two."""
    disk_mib: tuple[int, ...] = (64, 128, 256)
    disks: tuple[int, ...] = ()
    """Disk counts the VMs take in turn (``(2, 3)``: 2, 3, 2, ...); empty: one to three."""
    fill: float = 0.6
    seed: int = 0
    """Seeds sizes and content; ids are always fresh uuid4s, so two seeded clouds never share
    an RBD image name in one pool."""
    eligible: bool = False
    """Every VM running with its guest agent, its disks on Ceph: a run refuses none
    (instead of cycling through the profiles)."""


def build(plan: SeedPlan, ceph: CephTarget) -> EmulatorState:
    """The hosts and VMs of ``plan`` (no I/O)."""
    rng = random.Random(plan.seed)
    host_count = plan.hosts or max(2, (plan.vms + 3) // 4)
    hosts = [
        Host(
            id=HypervisorId(str(uuid.uuid4())),
            name=f"node{i + 1}",
            address=f"10.0.0.{i + 11}",
        )
        for i in range(host_count)
    ]
    vms = [_vm(i, hosts[i % host_count], plan, ceph, rng) for i in range(plan.vms)]
    return EmulatorState(ceph=ceph, hosts=hosts, vms=vms)


def _vm(index: int, host: Host, plan: SeedPlan, ceph: CephTarget, rng: random.Random) -> Vm:
    profile = _PROFILES[0 if plan.eligible else index % len(_PROFILES)]
    vm_id = VmId(str(uuid.uuid4()))
    disks = []
    count = plan.disks[index % len(plan.disks)] if plan.disks else 1 + (index + 1) % 3
    for order in range(count):
        volume = None if order == 0 else VolumeId(str(uuid.uuid4()))
        disks.append(
            Disk(
                id=DiskId(f"{vm_id}-disk{order}"),
                volume_id=volume,
                size=rng.choice(plan.disk_mib) * MIB,
                storage=profile.storage,
                pool=ceph.pool if profile.storage == "ceph" else "",
                boot=order == 0,
                device_index=order,
            )
        )
    name = f"{_NAMES[index % len(_NAMES)]}-{index + 1:02d}"
    return Vm(
        id=vm_id,
        name=name,
        host_id=host.id,
        state=profile.state,
        guest_agent=profile.agent,
        disks=tuple(disks),
    )


def seed(plan: SeedPlan, ceph: CephTarget, state_file: Path) -> tuple[EmulatorState, int]:
    """Create the RBD images of a fresh state and write the state file.

    Returns the state and the bytes written. On failure, images made so far are removed.
    """
    state = build(plan, ceph)
    rng = random.Random(plan.seed + 1)
    made: list[str] = []
    written = 0
    with CephImages(ceph) as images:
        try:
            for vm in state.vms:
                for disk in vm.disks:
                    name = ceph.image_name(vm.id, disk)
                    if name is not None:
                        written += images.create(name, disk.size, rng, plan.fill)
                        made.append(name)
        except BaseException:
            for name in made:
                images.remove(name)
            raise
    save(state, state_file)
    return state, written


def purge(state: EmulatorState) -> list[str]:
    """Remove every RBD image (and its snapshots) of ``state``; return their names."""
    names = [
        name
        for vm in state.vms
        for disk in vm.disks
        if (name := state.ceph.image_name(vm.id, disk)) is not None
    ]
    # at once: each snapshot removal waits about a second for the monitors, which
    # take concurrent ones together (15 images with snapshots: 2.6 s instead of 19 s)
    with CephImages(state.ceph) as images, ThreadPoolExecutor(16) as pool:
        list(pool.map(images.remove, names))
    return names
