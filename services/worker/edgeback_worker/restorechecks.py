"""The refusals of one VM restore that the worker checks before anything is written (S7).

Pure (no I/O). The target's live state is judged by the catalog's own rules
(``edgeback_core.restorerules.refusals``) on the VM as the platform reports it now; a
new path's mapping is checked again for a disk named twice (the catalog refuses that
at create, and a worker never trusts that what it was handed was checked). The pool's
part, every manifest and chunk present, is ``vm_restore``'s up-front check, reported
as ``restore_point_incomplete``. Codes: ``edgeback_core.messages.restores``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from edgeback_core.messages import restores as r
from edgeback_core.restorerules import Refusal
from edgeback_core.restorerules import refusals as target_refusals
from edgeback_platform.models import Disk, Vm
from edgeback_worker.inventory import inventory_vm

__all__ = ["DiskPair", "Refusal", "pairs", "refusals"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskPair:
    """One disk of the restore point and the target disk it is written to."""

    source: r.PointDisk
    target: Disk


def refusals(
    disks: Sequence[r.PointDisk],
    vm: Vm,
    mapping: Sequence[r.DiskMap] | None,
    *,
    needs_agent: bool,
) -> list[Refusal]:
    """Why ``vm`` cannot take ``disks`` now; empty if it can.

    ``mapping`` None is the original path (each disk onto the target disk of the same
    id). ``needs_agent``: a snapshot before overwrite is still to be taken.
    """
    # only the option the live-state rules read; the host is not theirs to check
    options = r.RestoreOptions(host_id="-", snapshot_before_overwrite=needs_agent)
    found = target_refusals(disks, inventory_vm(vm), options, mapping=mapping)
    return [*found, *_named_twice(mapping)]


def pairs(
    disks: Sequence[r.PointDisk], vm: Vm, mapping: Sequence[r.DiskMap] | None
) -> list[DiskPair]:
    """Each disk with its target disk, for a target that :func:`refusals` accepted."""
    by_id: dict[str, Disk] = {d.id: d for d in vm.disks}
    onto = {m.source_disk_id: m.target_disk_id for m in mapping or ()}
    return [DiskPair(source=d, target=by_id[onto.get(d.disk_id, d.disk_id)]) for d in disks]


def _named_twice(mapping: Sequence[r.DiskMap] | None) -> Iterator[Refusal]:
    if mapping is None:
        return
    sides = (
        (r.MAPPING_SOURCE_TWICE, "source", [m.source_disk_id for m in mapping]),
        (r.MAPPING_TARGET_TWICE, "target", [m.target_disk_id for m in mapping]),
    )
    for code, side, names in sides:
        for disk, count in sorted(Counter(names).items()):
            if count > 1:
                reason = f"the mapping names {side} disk {disk} {count} times"
                yield Refusal(code=code, reason=reason, disk_id=disk)
