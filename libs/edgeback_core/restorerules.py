"""The rules of a VM restore: what the spec alone allows, and what the target refuses.

Pure (no I/O). :func:`problems` checks a ``RestoreSpec`` against its restore points
(the catalog knows both at create time): ranges of the options, one restore point per
VM, and on a new path a disk mapping that maps every source disk once, onto distinct
target disks (S2). :func:`refusals` checks the target VM's live state (S7), which only
the worker sees: it runs them before it writes anything, and refuses the VM with every
code found. Codes are the constants of ``edgeback_core.messages.restores``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgeback_core.errors import InvalidRestoreError
from edgeback_core.jobrules import _is_id, _script, _windows
from edgeback_core.messages import restores as r
from edgeback_core.messages.restores import DiskMap, PointDisk, RestoreOptions, RestoreSpec
from edgeback_core.messages.schedule import Once, Schedule
from edgeback_core.messages.worker import InventoryVm
from edgeback_core.schedules import next_run

MAX_POINTS = 100
ONCE_PAST_GRACE = timedelta(minutes=1)
"""A once time this far before the request is still accepted (typing, clock skew)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# option: (lowest, highest) accepted, both inclusive
INT_RANGES: dict[str, tuple[int, int]] = {
    "parallel_vms": (1, 64),
    "vms_per_physical_host": (1, 5),
    "disks_per_vm": (1, 16),
    "streams_per_disk": (1, 32),
    "reconnect_minutes": (1, 60),
    "resume_buffer_mib": (1, 1024),
}
_REFUSED_STATES = {
    "suspended": r.REFUSE_TARGET_SUSPENDED,
    "paused": r.REFUSE_TARGET_PAUSED,
    "shelved": r.REFUSE_TARGET_SHELVED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    code: str
    field: str
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    code: str
    reason: str
    disk_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PointSummary:
    """What the rules need of a restore point: its VM, the platform the VM was backed up
    from (empty for a point imported from a pool) and its disks."""

    backup_set_id: str
    vm_id: str
    platform_id: str
    disks: tuple[PointDisk, ...]


def check(spec: RestoreSpec, points: Sequence[PointSummary], now: datetime | None = None) -> None:
    """``InvalidRestoreError`` naming every problem (``details``: ``codes``, ``problems``)."""
    found = problems(spec, points, now)
    if found:
        raise InvalidRestoreError(
            "invalid restore: " + "; ".join(p.text() for p in found),
            codes=[p.code for p in found],
            problems=[p.text() for p in found],
        )


def problems(
    spec: RestoreSpec, points: Sequence[PointSummary], now: datetime | None = None
) -> list[Problem]:
    """Every problem of ``spec`` with these restore points; empty if none. With ``now``:
    a ``once`` time already past (by more than :data:`ONCE_PAST_GRACE`) too."""
    found = [*_points(spec, points), *_mapping(spec, points), *_options(spec.options)]
    return found + list(_schedule(spec, now))


def once_instant(schedule: Schedule) -> datetime | None:
    """When a ``once`` schedule is due (UTC), whether or not that is past; else None."""
    if not isinstance(schedule, Once):
        return None
    # from the epoch, next_run answers the schedule's one instant, past or not
    return next_run(schedule, _EPOCH, anchor=_EPOCH)


def _schedule(spec: RestoreSpec, now: datetime | None) -> Iterator[Problem]:
    """A once time in the past is a mistake (or a restore made again from a saved
    job): it would be queued at once, or ended expired by the scheduler's late limit."""
    at = once_instant(spec.schedule)
    if now is not None and at is not None and at < now - ONCE_PAST_GRACE:
        yield Problem(
            code=r.ONCE_TIME_PAST,
            field="schedule.at",
            message=f"the once time {at.isoformat()} has passed: choose a later one",
        )


def _points(spec: RestoreSpec, points: Sequence[PointSummary]) -> Iterator[Problem]:
    if not 1 <= len(spec.backup_set_ids) <= MAX_POINTS:
        yield Problem(
            code=r.OPTION_OUT_OF_RANGE,
            field="backup_set_ids",
            message=f"choose 1-{MAX_POINTS} restore points",
        )
    for vm_id, count in Counter(p.vm_id for p in points).items():
        if count > 1:
            yield Problem(
                code=r.POINT_TWICE_FOR_VM,
                field="backup_set_ids",
                message=f"{count} restore points of VM {vm_id}: choose one",
            )
    if spec.target.new_path is not None and len(points) > 1:
        yield Problem(
            code=r.NEW_PATH_ONE_POINT,
            field="target.new_path",
            message="a new path restores one restore point (one VM)",
        )
    if spec.target.new_path is None:
        for point in points:
            if not point.platform_id:
                yield Problem(
                    code=r.POINT_NO_ORIGINAL_VM,
                    field="target.new_path",
                    message=f"restore point {point.backup_set_id} was imported from a pool "
                    "and names no platform: restore it to a new path",
                )


def _mapping(spec: RestoreSpec, points: Sequence[PointSummary]) -> Iterator[Problem]:
    new = spec.target.new_path
    if new is None or len(points) != 1:
        return
    field = "target.new_path.disks"
    sources = {d.disk_id for d in points[0].disks}
    maps = new.disks
    for disk, count in Counter(m.target_disk_id for m in maps).items():
        if count > 1:
            yield Problem(code=r.MAPPING_TARGET_TWICE, field=field, message=f"{disk} mapped twice")
    for disk, count in Counter(m.source_disk_id for m in maps).items():
        if count > 1:
            yield Problem(code=r.MAPPING_SOURCE_TWICE, field=field, message=f"{disk} mapped twice")
    mapped = {m.source_disk_id for m in maps}
    for disk in sorted(mapped - sources):
        yield Problem(
            code=r.MAPPING_UNKNOWN_SOURCE, field=field, message=f"{disk} is not in the point"
        )
    for disk in sorted(sources - mapped):
        yield Problem(code=r.MAPPING_SOURCE_UNMAPPED, field=field, message=f"{disk} is unmapped")
    targets = {m.target_disk_id for m in maps}
    if len(targets) < len(sources):
        yield Problem(
            code=r.MAPPING_TOO_FEW_TARGETS,
            field=field,
            message=f"{len(targets)} target disks for {len(sources)} source disks",
        )
    for name, value in (("platform_id", new.platform_id), ("vm_id", new.vm_id)):
        if not _is_id(value):
            yield Problem(
                code=r.OPTION_OUT_OF_RANGE,
                field=f"target.new_path.{name}",
                message="1-128 printable characters",
            )


def _options(opts: RestoreOptions) -> Iterator[Problem]:
    def out_of_range(field: str, message: str) -> Problem:
        return Problem(code=r.OPTION_OUT_OF_RANGE, field=field, message=message)

    if not _is_id(opts.host_id):
        yield out_of_range("options.host_id", "1-128 printable characters")
    for name, (low, high) in INT_RANGES.items():
        value = getattr(opts, name)
        if not low <= value <= high:
            yield out_of_range(f"options.{name}", f"{value} is outside {low}-{high}")
    if opts.instant and opts.snapshot_before_overwrite:
        # the original image is moved aside until the copy commits: that is the safety copy
        yield out_of_range(
            "options.snapshot_before_overwrite",
            "not with instant: the original image is kept aside until the copy commits",
        )
    safety_copy = opts.snapshot_before_overwrite or opts.instant
    if opts.keep_snapshot_on_success and not safety_copy:
        yield out_of_range(
            "options.keep_snapshot_on_success", "needs snapshot_before_overwrite or instant"
        )
    texts = [
        *_windows("options.restore_speed", opts.restore_speed),
        *_windows("options.transfer_speed", opts.transfer_speed),
    ]
    for name in ("precondition", "pre_script", "post_script"):
        script = getattr(opts, name)
        if script is not None:
            texts.extend(_script(f"options.{name}", script))
    for text in texts:
        field, _, message = text.partition(": ")
        yield out_of_range(field, message)


def refusals(
    restore_point_disks: Sequence[PointDisk],
    target_vm_inventory: InventoryVm | None,
    options: RestoreOptions,
    *,
    mapping: Sequence[DiskMap] | None = None,
) -> list[Refusal]:
    """Why the target VM cannot take this restore point now; empty if it can.

    ``mapping`` None is the original path: each source disk onto the target's disk of
    the same id. Checked by the worker before anything is written (S7).
    """
    vm = target_vm_inventory
    if vm is None:
        return [Refusal(code=r.REFUSE_TARGET_VM_GONE, reason="the target VM does not exist")]
    found: list[Refusal] = []
    if vm.state in _REFUSED_STATES:
        found.append(Refusal(code=_REFUSED_STATES[vm.state], reason=f"VM {vm.name} is {vm.state}"))
    if not vm.on_ceph:
        found.append(Refusal(code=r.REFUSE_TARGET_NOT_ON_CEPH, reason=f"VM {vm.name}: not on Ceph"))
    if options.snapshot_before_overwrite and not vm.guest_agent_running:
        found.append(
            Refusal(
                code=r.REFUSE_GUEST_AGENT_DOWN,
                reason=f"snapshot before overwrite needs VM {vm.name}'s guest agent running",
            )
        )
    if len(vm.disks) < len(restore_point_disks):
        found.append(
            Refusal(
                code=r.REFUSE_TARGET_TOO_FEW_DISKS,
                reason=f"VM {vm.name} has {len(vm.disks)} disks, "
                f"the restore point {len(restore_point_disks)}",
            )
        )
    found.extend(_disk_refusals(restore_point_disks, vm, mapping))
    return found


def _disk_refusals(
    disks: Sequence[PointDisk], vm: InventoryVm, mapping: Sequence[DiskMap] | None
) -> Iterator[Refusal]:
    pairs = {d.disk_id: d.disk_id for d in disks}
    if mapping is not None:
        pairs = {m.source_disk_id: m.target_disk_id for m in mapping}
    sizes = {d.id: d.size for d in vm.disks}
    for source in disks:
        target = pairs.get(source.disk_id)
        if target is None or target not in sizes:
            yield Refusal(
                code=r.REFUSE_TARGET_DISK_GONE,
                reason=f"no target disk {target or '(unmapped)'} for {source.disk_id}",
                disk_id=source.disk_id,
            )
        elif sizes[target] < source.size_bytes:
            yield Refusal(
                code=r.REFUSE_TARGET_DISK_SMALLER,
                reason=f"target disk {target} ({sizes[target]} B) is smaller than "
                f"{source.disk_id} ({source.size_bytes} B)",
                disk_id=source.disk_id,
            )
