"""The refusals of a VM restore that the worker checks before anything is written (S7).

Pure (no I/O): the target VM as the platform reports it, the restore point's disks and
the disk mapping in, every refusal found out (an operator fixes them all at once). The
pool's part (manifests and chunks present) is checked by ``vm_restore`` and reported
with :data:`REFUSE_POINT_INCOMPLETE`. The codes are the strings of
``edgeback_core.messages.restores`` (the catalog's restore messages), which the catalog
records on the run; a new path's mapping is checked here again because a worker must
never trust that the spec it was handed was checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from edgeback_platform.models import Disk, Vm

REFUSE_TARGET_VM_GONE = "target_vm_not_found"
REFUSE_TARGET_NOT_ON_CEPH = "target_not_on_ceph"
REFUSE_TARGET_SUSPENDED = "target_vm_suspended"
REFUSE_TARGET_PAUSED = "target_vm_paused"
REFUSE_TARGET_SHELVED = "target_vm_shelved"
REFUSE_TARGET_DISK_GONE = "target_disk_not_found"
REFUSE_TARGET_DISK_SMALLER = "target_disk_smaller"
REFUSE_TARGET_TOO_FEW_DISKS = "target_too_few_disks"
REFUSE_MAPPING_DISK_TWICE = "mapping_disk_twice"
REFUSE_GUEST_AGENT_DOWN = "target_guest_agent_down"
REFUSE_POINT_INCOMPLETE = "restore_point_incomplete"

_REFUSED_STATES = {
    "suspended": REFUSE_TARGET_SUSPENDED,
    "paused": REFUSE_TARGET_PAUSED,
    "shelved": REFUSE_TARGET_SHELVED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    code: str
    reason: str
    disk_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskPair:
    """One source disk of the restore point and the target disk it is written to."""

    source_id: str
    source_size: int
    target: Disk


def refusals(
    sources: Sequence[tuple[str, int]],
    vm: Vm,
    mapping: Sequence[tuple[str, str]] | None,
    *,
    needs_agent: bool,
) -> list[Refusal]:
    """Why ``vm`` cannot take the disks ``sources`` ((disk id, size) each) now.

    ``mapping`` None is the original path: each source disk onto the target disk of the
    same id. ``needs_agent``: a snapshot before overwrite is still to be taken.
    """
    found: list[Refusal] = []
    if vm.state in _REFUSED_STATES:
        found.append(Refusal(code=_REFUSED_STATES[vm.state], reason=f"VM {vm.name} is {vm.state}"))
    if not vm.on_ceph:
        found.append(Refusal(code=REFUSE_TARGET_NOT_ON_CEPH, reason=f"VM {vm.name}: not on Ceph"))
    if needs_agent and not vm.guest_agent.running:
        reason = f"snapshot before overwrite needs VM {vm.name}'s guest agent running"
        found.append(Refusal(code=REFUSE_GUEST_AGENT_DOWN, reason=reason))
    if len(vm.disks) < len(sources):
        reason = f"VM {vm.name} has {len(vm.disks)} disks, the restore point {len(sources)}"
        found.append(Refusal(code=REFUSE_TARGET_TOO_FEW_DISKS, reason=reason))
    found.extend(_twice(mapping))
    found.extend(_disk_refusals(sources, vm, mapping))
    return found


def pairs(
    sources: Sequence[tuple[str, int]], vm: Vm, mapping: Sequence[tuple[str, str]] | None
) -> list[DiskPair]:
    """Source disk → target disk, for a target that :func:`refusals` accepted."""
    by_id: dict[str, Disk] = {d.id: d for d in vm.disks}
    targets = dict(mapping) if mapping is not None else {s: s for s, _ in sources}
    return [DiskPair(source_id=s, source_size=n, target=by_id[targets[s]]) for s, n in sources]


def _twice(mapping: Sequence[tuple[str, str]] | None) -> Iterator[Refusal]:
    if mapping is None:
        return
    for side, names in (("source", [s for s, _ in mapping]), ("target", [t for _, t in mapping])):
        for disk, count in sorted(Counter(names).items()):
            if count > 1:
                yield Refusal(
                    code=REFUSE_MAPPING_DISK_TWICE,
                    reason=f"the mapping names {side} disk {disk} {count} times",
                    disk_id=disk,
                )


def _disk_refusals(
    sources: Sequence[tuple[str, int]], vm: Vm, mapping: Sequence[tuple[str, str]] | None
) -> Iterator[Refusal]:
    targets = dict(mapping) if mapping is not None else {s: s for s, _ in sources}
    sizes: dict[str, int] = {d.id: d.size for d in vm.disks}
    for source, size in sources:
        target = targets.get(source)
        if target is None or target not in sizes:
            yield Refusal(
                code=REFUSE_TARGET_DISK_GONE,
                reason=f"no target disk {target or '(unmapped)'} for {source}",
                disk_id=source,
            )
        elif sizes[target] < size:
            yield Refusal(
                code=REFUSE_TARGET_DISK_SMALLER,
                reason=f"target disk {target} ({sizes[target]} B) is smaller than "
                f"{source} ({size} B)",
                disk_id=source,
            )
