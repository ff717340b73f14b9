"""Pure rules of a backup run on the worker: which VMs, which names, which snapshots
to release, when to report progress, in which order to queue VM tasks. No I/O; the
handlers (``runplan``, ``vmtask``) apply them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time as clock_time
from fnmatch import fnmatchcase
from typing import TypeVar

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.pipeline.rate_windows import RateWindow
from edgeback_core.messages.jobs import JobContent, JobOptions, SpeedWindow
from edgeback_core.messages.restores import (
    RestoreOptions,
    RestoreStarted,
    RestoreVmFinished,
    RestoreVmStarted,
)
from edgeback_core.messages.runs import (
    BackupSetCreated,
    RunStarted,
    Versioned,
    VmFinished,
    VmRef,
    VmRefused,
    VmSkipped,
    VmStarted,
)
from edgeback_core.retry import RetryPolicy
from edgeback_platform.models import SnapshotId, Vm, VmSnapshot

_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UNIT_BYTES = {"KiB/s": 1024, "MiB/s": 1024**2, "GiB/s": 1024**3}
T = TypeVar("T")


def resolve_content(content: JobContent, listed: Mapping[str, Sequence[Vm]]) -> list[VmRef]:
    """The VMs a job's content names, in selection order, each once, minus the name
    exclusions. ``listed`` holds each selected platform's VMs as listed now. A VM
    selected by id that the platform no longer lists is kept (with no name): its task
    refuses it as ``vm_not_found`` so the run says so."""
    chosen: dict[tuple[str, str], VmRef] = {}
    for sel in content.vms:
        vms = listed.get(sel.platform_id, ())
        if sel.vm_id is not None:
            found = [vm for vm in vms if vm.id == sel.vm_id]
            if not found:
                ref = VmRef(platform_id=sel.platform_id, vm_id=sel.vm_id)
                chosen.setdefault((sel.platform_id, sel.vm_id), ref)
                continue
            vms = found
        elif sel.physical_host_id is not None:
            vms = [vm for vm in vms if vm.host_id == sel.physical_host_id]
        for vm in vms:
            chosen.setdefault((sel.platform_id, vm.id), vm_ref(sel.platform_id, vm))
    return [ref for ref in chosen.values() if not excluded(ref.name, content.exclude_names)]


def reconnect_s(opts: JobOptions | RestoreOptions, cap_s: float | None = None) -> float:
    """The job's (or restore's) reconnect time in seconds, at most ``cap_s`` (a test
    setting: a job's own is at least a minute)."""
    full = opts.reconnect_minutes * 60.0
    return full if cap_s is None else min(full, cap_s)


def reconnect_policy(opts: JobOptions, cap_s: float | None = None) -> RetryPolicy:
    """How a run's platform and storage-node requests are retried: ``request_retries``
    times for any transient error, and a lost connection until the job's reconnect time
    (waits capped at 5 s, so a peer that is back is used again within seconds)."""
    return RetryPolicy(
        retries=opts.request_retries, base_delay=0.5, max_delay=5.0,
        reconnect=reconnect_s(opts, cap_s),
    )  # fmt: skip


def catalog_policy(reconnect: float) -> RetryPolicy:
    """How a VM task's catalog calls are retried: only a lost connection (the catalog's
    own answers, a conflict or a busy lock, are its caller's to handle), until
    ``reconnect`` seconds after the call's first attempt; waits capped at 2 s, so a
    catalog that is back is heard within seconds, before a claim it lets lapse is
    likely to be taken over."""
    return RetryPolicy(retries=0, base_delay=0.25, max_delay=2.0, reconnect=reconnect)


def restore_policy(opts: RestoreOptions, request_retries: int = 3) -> RetryPolicy:
    """A restore's platform and storage-node requests: as a run's (:func:`reconnect_policy`)
    with the restore's reconnect time (restores have no ``request_retries`` option)."""
    return RetryPolicy(
        retries=request_retries, base_delay=0.5, max_delay=5.0,
        reconnect=opts.reconnect_minutes * 60.0,
    )  # fmt: skip


def stream_depth(resume_buffer_mib: int, chunk_size: int = CHUNK_SIZE) -> int:
    """Chunks one read stream may hold before the node has them (the job's resume
    buffer: what is kept to send again after a network fault); at least one."""
    return max(1, resume_buffer_mib * 1024 * 1024 // chunk_size)


def across_physical_hosts(items: Sequence[T], host_of: Callable[[T], str]) -> list[T]:
    """``items`` taken from each physical host in turn (hosts in order of first
    appearance, each host's items in their order). Queued VM tasks in this order keep
    consecutive tasks off one host, so a host at its VMs-per-host limit defers few tasks
    and the free slots of the run go to the other hosts' VMs."""
    by_host: dict[str, list[T]] = {}
    for item in items:
        by_host.setdefault(host_of(item), []).append(item)
    rounds = max((len(queued) for queued in by_host.values()), default=0)
    return [queued[i] for i in range(rounds) for queued in by_host.values() if i < len(queued)]


def vm_ref(platform_id: str, vm: Vm) -> VmRef:
    return VmRef(platform_id=platform_id, vm_id=vm.id, name=vm.name, physical_host_id=vm.host_id)


def excluded(name: str, globs: Collection[str]) -> bool:
    return bool(name) and any(fnmatchcase(name, glob) for glob in globs)


def version_for_run(run_id: str) -> str:
    """The manifest version name of every disk a run backs up: fixed by the run, so a
    redelivered or resumed task commits under the same name."""
    if _VERSION_NAME.fullmatch(run_id):
        return run_id
    return "run-" + hashlib.blake2b(run_id.encode(), digest_size=16).hexdigest()


def snapshot_key(run_id: str, vm_id: str) -> str:
    """The platform idempotency key of a run's snapshot of a VM (one snapshot per run/VM,
    whichever worker and attempt asks)."""
    return f"edgeback/{run_id}/{vm_id}"


def lease_holder(run_id: str, vm_id: str) -> str:
    return f"{run_id}/{vm_id}"


def task_message_id(run_id: str, vm_id: str, attempt: int) -> str:
    return f"{run_id}/{vm_id}/{attempt}"


def restore_task_message_id(restore_id: str, backup_set_id: str, attempt: int) -> str:
    return f"restore/{restore_id}/{backup_set_id}/{attempt}"


def event_message_id(event: Versioned) -> str | None:
    """The stable message id of a run or restore event (docs/runs.md, docs/events.md):
    what a redelivered task publishes again carries the same id, so the run log and any
    consumer keep it once. None for ``RunProgress`` and ``RestoreProgress``: each report
    is news of its own (a fresh uuid)."""
    match event:
        case RunStarted():
            found = f"started:{event.run_id}"
        case VmStarted() | VmFinished():
            kind = "vm-started" if isinstance(event, VmStarted) else "vm-finished"
            found = f"{kind}:{event.run_id}/{event.vm.vm_id}/{event.attempt}"
        case VmSkipped() | VmRefused():
            kind = "vm-skipped" if isinstance(event, VmSkipped) else "vm-refused"
            found = f"{kind}:{event.run_id}/{event.vm.vm_id}"
        case BackupSetCreated():
            found = f"set-created:{event.backup_set_id}"
        case RestoreStarted():
            found = f"restore-started:{event.restore_id}"
        case RestoreVmStarted() | RestoreVmFinished():
            step = "started" if isinstance(event, RestoreVmStarted) else "finished"
            kind = f"restore-vm-{step}"
            found = f"{kind}:{event.restore_id}/{event.backup_set_id}/{event.attempt}"
        case _:
            return None
    return found


def rate_windows(speed: Sequence[SpeedWindow]) -> list[RateWindow]:
    """A job's speed-limit windows as the throttle's rule (``HH:MM`` local times)."""
    return [
        RateWindow(
            start=clock_time.fromisoformat(w.start),
            end=clock_time.fromisoformat(w.end),
            bytes_per_s=w.rate * _UNIT_BYTES[w.unit],
        )
        for w in speed
    ]


def snapshots_to_release(
    snapshots: Sequence[VmSnapshot],
    *,
    ours: Collection[str],
    keep: Collection[str],
    rbd_name: Callable[[str], str],
) -> list[SnapshotId]:
    """The VM snapshots to delete after a backup: those edgeback made (one of their RBD
    snapshot names is in ``ours``, from the catalog's disk versions and this run) that
    are not to be kept (none of their names in ``keep``: the newest backup's and the last
    full's with "keep latest snapshot", nothing without it). Anyone else's snapshot of
    the VM is never touched."""
    released = []
    for snap in snapshots:
        names = {rbd_name(part.snapshot_id) for part in snap.disks}
        if names & set(ours) and not names & set(keep):
            released.append(snap.id)
    return released


@dataclass(slots=True, kw_only=True)
class ProgressGate:
    """Lets a progress report through at most every ``interval_s`` seconds (the last
    one always): events stay at a bounded rate whatever the disk speed."""

    interval_s: float
    clock: Callable[[], float]
    _last: float | None = field(default=None)

    def allow(self, *, final: bool = False) -> bool:
        now = self.clock()
        if final or self._last is None or now - self._last >= self.interval_s:
            self._last = now
            return True
        return False
