"""A restore run's VM with the option ``instant`` (X8, docs/instant-restore.md).

The same refusals as a normal restore (the target's live state, the mapping, every
manifest and chunk of the point in the pool), plus instant restore's own (the
hypervisors open images with krbd, a cluster older than Pacific, an encrypted pool the
node cannot serve as an image), all before anything is touched. Then
``restore_instantly``: every target disk moved aside and prepared as an import-only
live migration from a capability URL of the storage node, the VM started, the copy
executed in the background (progress as the run's ``RestoreProgress``), committed.
Its state lives in Ceph: a redelivered task calls it again with the same plan and it
continues where the disks stand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from edgeback_blocks.pipeline import Progress, RestoreStats
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import RbdCluster
from edgeback_core.errors import EdgebackError, InstantRestoreFailedError, NotFoundError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import restores as r
from edgeback_worker.instant_plan import (
    DiskProgress,
    InstantDisk,
    InstantEvent,
    InstantRestorePlan,
    instant_refusals,
)
from edgeback_worker.instant_restore import InstantRestoreContext, restore_instantly
from edgeback_worker.restorechecks import Refusal, pairs, refusals
from edgeback_worker.vm_restore import (
    RestoreResources,
    VmRestoreOutcome,
    VmRestoreRequest,
    check_point,
    image_name,
    manifest_ref,
    refused,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstantInputs:
    """What an instant restore needs beyond a normal one's request and resources."""

    restore_key: str
    """Stable per restore and restore point: names the moved-aside images."""
    storage: m.StorageInfo
    """The target's Ceph storage (its ``rbd_client``, conf and client id)."""
    node_url: str
    """The storage node as every librbd client of the targets reaches it."""
    keep_moved_aside: bool
    progress_interval_s: float


async def restore_vm_instantly(
    request: VmRestoreRequest, res: RestoreResources, inputs: InstantInputs
) -> VmRestoreOutcome:
    """Restore the VM instantly, or say why not (``refused``, nothing touched) or what
    failed (``failed``: every migration aborted and every original image back)."""
    try:
        vm = await res.platform.get_vm(request.target_vm_id)
    except NotFoundError as exc:
        return refused([Refusal(code=r.REFUSE_TARGET_VM_GONE, reason=exc.message)])
    found = refusals(request.disks, vm, request.mapping, needs_agent=False)
    manifests, incomplete = await check_point(request.disks, res)
    node = res.pool if isinstance(res.pool, PoolClient) else None
    versions = await res.cluster.versions()
    own = instant_refusals(
        versions, inputs.storage.rbd_client, encrypted=res.keys.encrypted, node=node is not None
    )
    found += [*incomplete, *(Refusal(code=x.code, reason=x.reason) for x in own)]
    if found:
        return refused(found)
    assert node is not None  # refused above otherwise
    disk_pairs = pairs(request.disks, vm, request.mapping)
    ceph_pools = {p.target.pool for p in disk_pairs}
    if len(ceph_pools) != 1:
        reason = f"the target disks are in {len(ceph_pools)} Ceph pools; instant needs one"
        return refused([Refusal(code=r.REFUSE_TARGET_NOT_ON_CEPH, reason=reason)])
    # an instant disk is named by its manifest (source) disk; events go out by target disk
    disks: list[InstantDisk] = []
    target_of: dict[str, str] = {}
    for pair in disk_pairs:
        ref = manifest_ref(pair.source)
        target_of[ref.disk] = str(pair.target.id)
        disks.append(InstantDisk(
            disk=ref.disk, version=ref.version,
            target=image_name(res.templates, vm, pair.target),
            size=manifests[pair.source.disk_id].header.image_size,
        ))  # fmt: skip
    source_vm = manifest_ref(request.disks[0]).vm
    plan = InstantRestorePlan(
        restore_key=inputs.restore_key, vm=source_vm, disks=tuple(disks),
        start_vm=vm.id, keep_moved_aside=inputs.keep_moved_aside,
        progress_interval_s=inputs.progress_interval_s,
    )  # fmt: skip
    started = time.monotonic()
    on_event = _events(res.progress, target_of, started)
    async with res.cluster.open_pool(next(iter(ceph_pools))) as ceph_pool:
        ctx = InstantRestoreContext(
            pool=ceph_pool, node=node, node_url=inputs.node_url,
            manifest_mac_key=res.keys.manifest.mac, platform=res.platform, on_event=on_event,
            execute_cluster=lambda: RbdCluster.connect(
                inputs.storage.conf_path, inputs.storage.client_id
            ),
        )  # fmt: skip
        try:
            result = await restore_instantly(ctx, plan)
        except InstantRestoreFailedError as exc:
            return _failed(exc, target_of)
        except EdgebackError as exc:
            if exc.retryable:
                raise  # redelivered: the next attempt continues from what Ceph shows
            return VmRestoreOutcome(status="failed", code=exc.code, message=exc.message)
    elapsed = time.monotonic() - started
    stats = {target_of[d.disk]: _copied(d, elapsed) for d in disks}
    log.info("instant_restore.succeeded", vm=vm.id, vm_started_s=result.vm_started_s,
             committed_s=round(result.committed_s, 3), kept=result.kept)  # fmt: skip
    return VmRestoreOutcome(status="succeeded", stats=stats, started=True)


def _copied(disk: InstantDisk, elapsed_s: float) -> RestoreStats:
    """What Ceph copied in (librbd reads the node; the worker moves no data itself)."""
    return RestoreStats(
        image_size=disk.size, chunks=0, chunks_fetched=0, bytes_fetched=0,
        bytes_written=disk.size, bytes_zeroed=0, bytes_left=0, duration_s=elapsed_s, cpu_s=0.0,
    )  # fmt: skip


def _failed(exc: InstantRestoreFailedError, target_of: dict[str, str]) -> VmRestoreOutcome:
    """Failed before any commit: each disk's roll-back outcome is in ``details``."""
    outcomes = exc.details.get("disks", [])
    back = [
        target_of.get(str(o.get("disk")), str(o.get("disk"))) for o in outcomes
        if isinstance(o, dict) and str(o.get("outcome", "")).startswith("aborted")
    ]  # fmt: skip
    return VmRestoreOutcome(
        status="failed", code=exc.code, message=exc.message, rolled_back=tuple(back)
    )


def _events(
    progress: Callable[[str, Progress], None] | None, target_of: dict[str, str], started: float
) -> Callable[[InstantEvent], None]:
    """The instant restore's events as the run's per-disk progress (by target disk)."""

    def on_event(event: InstantEvent) -> None:
        if progress is None or not isinstance(event, DiskProgress):
            return
        progress(target_of.get(event.disk, event.disk), Progress(
            done_bytes=event.done_bytes, total_bytes=event.total_bytes,
            elapsed_s=time.monotonic() - started, rate_bps=event.rate_bytes_per_s,
            final=event.done_bytes >= event.total_bytes,
        ))  # fmt: skip

    return on_event
