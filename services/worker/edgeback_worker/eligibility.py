"""Which VMs a backup run may touch, and why not (B5, B8): pure rules, no I/O.

A refused VM is reported with a stable code while the other VMs of the run go on:
not on Ceph (we read RBD images, nothing else), shelved (no disks attached to back up),
no usable guest agent (no consistent snapshot). A stopped VM needs no freeze, so only
a running VM needs its agent running. A skip is the free-space rule, checked before the
snapshot: the Ceph pool holding the VM's disks has at most ``min_free_percent`` % or at
most ``min_free_gib`` GiB free (0 turns a threshold off).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edgeback_platform.models import Vm

GIB = 1024**3


class Refusal(StrEnum):
    NOT_ON_CEPH = "vm_not_on_ceph"
    SHELVED = "vm_shelved"
    NO_GUEST_AGENT = "guest_agent_missing"
    GUEST_AGENT_DOWN = "guest_agent_not_running"


class Skip(StrEnum):
    LOW_FREE_SPACE = "datastore_low_free_space"


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    code: Refusal | Skip
    reason: str


def refusal(vm: Vm) -> Verdict | None:
    """Why ``vm`` cannot be backed up, or None when it can."""
    if vm.state == "shelved":
        return Verdict(code=Refusal.SHELVED, reason=f"VM {vm.name} is shelved")
    if not vm.on_ceph:
        others = sorted({d.id for d in vm.disks if d.storage != "ceph"})
        detail = f"disks not on Ceph: {', '.join(others)}" if others else "it has no disks"
        return Verdict(code=Refusal.NOT_ON_CEPH, reason=f"VM {vm.name}: {detail}")
    if not vm.guest_agent.installed:
        return Verdict(
            code=Refusal.NO_GUEST_AGENT, reason=f"VM {vm.name} has no guest agent installed"
        )
    if vm.state == "running" and not vm.guest_agent.running:
        return Verdict(
            code=Refusal.GUEST_AGENT_DOWN,
            reason=f"VM {vm.name} is running but its guest agent is not",
        )
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeSpaceRule:
    min_free_percent: float = 0.0
    min_free_gib: float = 0.0

    def verdict(self, *, pool: str, free_bytes: int, total_bytes: int) -> Verdict | None:
        """A skip when the pool's free space is at or under a threshold, else None."""
        percent = 100.0 * free_bytes / total_bytes if total_bytes > 0 else 0.0
        low_percent = self.min_free_percent > 0 and percent <= self.min_free_percent
        low_gib = self.min_free_gib > 0 and free_bytes <= self.min_free_gib * GIB
        if not (low_percent or low_gib):
            return None
        return Verdict(
            code=Skip.LOW_FREE_SPACE,
            reason=(
                f"Ceph pool {pool} has {free_bytes / GIB:.1f} GiB ({percent:.1f} %) free, "
                f"limits {self.min_free_percent:g} % / {self.min_free_gib:g} GiB"
            ),
        )
