"""Restore ONE VM from one restore point (docs/restores.md, the worker's part).

Explicit inputs: the restore point's disks (manifests in a pool, sizes), the target VM
(the source VM itself on the original path; an existing VM and a disk mapping on a new
path), the options, and the resources (platform, pool, Ceph, templates, throttles).
Every refusal is checked before anything is written (``restorechecks`` on the target,
the pool asked for every manifest and every chunk). Then: the safety snapshot through
the platform (quiesced by the guest agent) when asked, the VM stopped if it runs, the
disks written by ``restore_disk`` with checkpoints in the target image's metadata
(``restoremarks``), the part of a larger target beyond the source zeroed, and the VM
started if asked. A failed disk rolls EVERY target disk back to the safety snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import structlog

from edgeback_blocks.extents import touched_chunks
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.keys import ClientKeys
from edgeback_blocks.manifest import Manifest
from edgeback_blocks.pipeline import (
    ChunkSource,
    Progress,
    RestoreOptions,
    RestoreStats,
    cpu,
    restore_disk,
)
from edgeback_blocks.pipeline.rate_windows import RateWindow, WindowedThrottle
from edgeback_blocks.pipeline.sampling import sample_unchanged
from edgeback_blocks.rbd import RbdCluster, RbdImage
from edgeback_cli.commands import ManifestSource, fetch_manifest
from edgeback_cli.refs import ManifestRef
from edgeback_core.errors import EdgebackError, NotFoundError
from edgeback_core.messages import restores as r
from edgeback_core.throttle import UNLIMITED, Throttle
from edgeback_platform.models import Disk, SnapshotId, Vm, VmId
from edgeback_platform.port import CloudPlatform
from edgeback_platform.templates import RbdTemplates
from edgeback_worker import restoremarks as marks
from edgeback_worker.restorechecks import DiskPair, Refusal, pairs, refusals

log = structlog.get_logger(__name__)

Status = Literal["succeeded", "refused", "failed"]


def manifest_ref(disk: r.PointDisk) -> ManifestRef:
    """Where a restore point's disk is in the pool: ``manifest_name`` is ``vm/disk``
    (imported) or ``vm/disk/version`` (runs); ``manifest_version`` names the version."""
    vm, _, rest = disk.manifest_name.partition("/")
    return ManifestRef(vm, rest.partition("/")[0], disk.manifest_version)


@dataclass(frozen=True, slots=True, kw_only=True)
class VmRestoreOptions:
    snapshot_before: bool = False
    keep_snapshot: bool = False
    """Keep the safety snapshot after a success (it is always removed after a rollback)."""
    start_vm_after: bool = False
    changed_only: bool = True
    """Write only the chunks changed since the backup's snapshot, when the target is
    the image it was taken of and still holds it."""
    disks_per_vm: int = 2
    streams_per_disk: int = 4
    restore_speed: tuple[RateWindow, ...] = ()
    """Writes into the target images, bytes per second by time of day."""
    transfer_speed: tuple[RateWindow, ...] = ()
    """Chunk records fetched from the storage node."""
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    reconnect_s: float = 600.0
    """How long a disk retries a dependency that went away (node, Ceph) from its checkpoint."""
    checkpoint_interval_s: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class VmRestoreRequest:
    restore_id: str
    """Stable across redeliveries: names the checkpoints and the safety snapshot marks."""
    disks: tuple[r.PointDisk, ...]
    """The restore point's disks (``RestorePoint.disks``)."""
    target_vm_id: VmId
    mapping: tuple[r.DiskMap, ...] | None = None
    """A new path's disk mapping; None: the original path (the source VM's own disks)."""
    options: VmRestoreOptions = field(default_factory=VmRestoreOptions)


class PointPool(ManifestSource, ChunkSource, Protocol):
    """What a restore uses of the pool: manifests, chunks, and which chunks it lacks."""

    async def missing(self, digests: Iterable[ChunkDigest]) -> set[ChunkDigest]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResources:
    platform: CloudPlatform
    pool: PointPool
    keys: ClientKeys
    cluster: RbdCluster
    templates: RbdTemplates
    write_throttle: Throttle = UNLIMITED
    net_throttle: Throttle = UNLIMITED
    progress: Callable[[str, Progress], None] | None = None
    """(target disk id, progress) as each disk advances."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VmRestoreOutcome:
    status: Status
    code: str = ""
    message: str = ""
    refusals: tuple[Refusal, ...] = ()
    rolled_back: tuple[str, ...] = ()
    """Target disks returned to the safety snapshot after a failure."""
    snapshot_id: str | None = None
    """The safety snapshot, when it was kept."""
    stats: dict[str, RestoreStats] = field(default_factory=dict)
    started: bool = False


def throttles(options: VmRestoreOptions) -> tuple[Throttle, Throttle]:
    """(write, network) throttles of the options' speed windows."""
    write = WindowedThrottle(options.restore_speed, options.zone) if options.restore_speed else None
    net = WindowedThrottle(options.transfer_speed, options.zone) if options.transfer_speed else None
    return write or UNLIMITED, net or UNLIMITED


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    pair: DiskPair
    pool: str
    image: str
    manifest: Manifest
    ref: str
    """The manifest's ``vm/disk/version``: what a checkpoint on the image belongs to."""


async def restore_vm(
    request: VmRestoreRequest, res: RestoreResources, vm: Vm | None = None
) -> VmRestoreOutcome:
    """Restore the VM, or say why not (``refused``, nothing written) or what failed.
    ``vm``: the target as the platform listed it a moment ago (else asked here)."""
    if vm is None:
        try:
            vm = await res.platform.get_vm(request.target_vm_id)
        except NotFoundError as exc:
            return refused([Refusal(code=r.REFUSE_TARGET_VM_GONE, reason=exc.message)])
    disks = request.disks
    disk_pairs: list[DiskPair] = []
    safety: marks.SafetyMark | None = None
    if not refusals(disks, vm, request.mapping, needs_agent=False):
        disk_pairs = pairs(disks, vm, request.mapping)
        safety = await _safety_mark(res, vm, disk_pairs[0].target, request.restore_id)
    # a resumed restore took its snapshot already (and stopped the VM, and its agent)
    needs_agent = request.options.snapshot_before and safety is None
    found = refusals(disks, vm, request.mapping, needs_agent=needs_agent)
    manifests, incomplete = await check_point(request.disks, res)
    if found or incomplete:
        return refused([*found, *incomplete])
    targets = [_target(res.templates, vm, p, manifests[p.source.disk_id]) for p in disk_pairs]
    return await _Run(request=request, res=res, vm=vm, targets=targets).run(safety)


def refused(found: list[Refusal]) -> VmRestoreOutcome:
    log.warning("vm_restore.refused", codes=[r.code for r in found])
    return VmRestoreOutcome(
        status="refused",
        code=found[0].code,
        message="; ".join(r.reason for r in found),
        refusals=tuple(found),
    )


def image_name(templates: RbdTemplates, vm: Vm, disk: Disk) -> str:
    if disk.volume_id is None:
        return templates.instance_image(vm.id)
    return templates.volume_image(disk.volume_id)


def _target(templates: RbdTemplates, vm: Vm, pair: DiskPair, manifest: Manifest) -> Target:
    ref = manifest_ref(pair.source)
    return Target(
        pair=pair, pool=pair.target.pool, image=image_name(templates, vm, pair.target),
        manifest=manifest, ref=f"{ref.vm}/{ref.disk}/{ref.version}",
    )  # fmt: skip


async def _safety_mark(
    res: RestoreResources, vm: Vm, disk: Disk, restore_id: str
) -> marks.SafetyMark | None:
    """The safety snapshot an earlier attempt of this restore took (it outlives a worker)."""
    async with (
        res.cluster.open_pool(disk.pool) as pool,
        pool.open_image(image_name(res.templates, vm, disk), read_only=True) as opened,
    ):
        return marks.decode_safety(await opened.metadata_get(marks.safety_key(restore_id)))


async def check_point(
    disks: tuple[r.PointDisk, ...], res: RestoreResources
) -> tuple[dict[str, Manifest], list[Refusal]]:
    """Every manifest of the point, and a refusal for each one or any chunk not in the pool."""
    manifests: dict[str, Manifest] = {}
    found: list[Refusal] = []
    for disk in disks:
        ref = manifest_ref(disk)
        try:
            manifests[disk.disk_id] = await fetch_manifest(ref, res.pool, res.keys)
        except EdgebackError as exc:
            if exc.retryable:
                raise
            reason = f"manifest {ref.vm}/{ref.disk}/{ref.version}"
            found.append(
                Refusal(
                    code=r.REFUSE_POINT_INCOMPLETE,
                    reason=f"{reason}: {exc.code}: {exc.message}",
                    disk_id=disk.disk_id,
                )
            )
    wanted: set[ChunkDigest] = {
        digest for m in manifests.values() for digest in m.entries if digest is not None
    }
    missing = await res.pool.missing(wanted) if wanted else set()
    if missing:
        named = ", ".join(sorted(d.hex() for d in missing)[:3])
        found.append(
            Refusal(
                code=r.REFUSE_POINT_INCOMPLETE,
                reason=f"{len(missing)} chunk(s) of the restore point are not in the pool: {named}",
            )
        )
    return manifests, found


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """The writing part, once nothing refuses the restore."""

    request: VmRestoreRequest
    res: RestoreResources
    vm: Vm
    targets: list[Target]

    async def run(self, safety: marks.SafetyMark | None) -> VmRestoreOutcome:
        opts = self.request.options
        if opts.snapshot_before and safety is None:
            safety = await self._snapshot()
        if self.vm.state == "running":
            await self.res.platform.stop_vm(self.vm.id)
        try:
            stats = await self._disks()
        except EdgebackError as exc:
            return await self._failed(exc, safety)
        if safety is not None:  # each disk's checkpoint went with its end (``_disk``)
            await self._clear_marks()
        kept = None
        if safety is not None and opts.keep_snapshot:
            kept = safety.snapshot_id
        elif safety is not None:
            await self.res.platform.delete_snapshot(self.vm.id, SnapshotId(safety.snapshot_id))
        if opts.start_vm_after:
            await self.res.platform.start_vm(self.vm.id)
        log.info("vm_restore.succeeded", vm=self.vm.id, disks=len(stats), snapshot_kept=kept)
        return VmRestoreOutcome(
            status="succeeded", stats=stats, snapshot_id=kept, started=opts.start_vm_after
        )

    async def _snapshot(self) -> marks.SafetyMark:
        """Snapshot every target disk at once, quiesced; mark each image with it first."""
        snapshot = await self.res.platform.create_snapshot(self.vm.id, quiesce=True)
        mark = marks.SafetyMark(snapshot_id=snapshot.id, rbd_snap="")
        for target in self.targets:
            rbd_snap = self.res.templates.snapshot_name(snapshot.for_disk(target.pair.target.id))
            async with self._image(target, read_only=False) as image:
                await image.metadata_set(
                    marks.safety_key(self.request.restore_id),
                    marks.encode_safety(snapshot.id, rbd_snap),
                )
        log.info("vm_restore.snapshot_taken", vm=self.vm.id, snapshot=snapshot.id)
        return mark

    @contextlib.asynccontextmanager
    async def _image(self, target: Target, *, read_only: bool) -> AsyncIterator[RbdImage]:
        async with (
            self.res.cluster.open_pool(target.pool) as pool,
            pool.open_image(target.image, read_only=read_only) as image,
        ):
            yield image

    async def _disks(self) -> dict[str, RestoreStats]:
        gate = asyncio.Semaphore(max(1, self.request.options.disks_per_vm))

        async def one(target: Target) -> RestoreStats:
            async with gate:
                return await self._disk_retrying(target)

        # a TaskGroup cancels the other disks at the first failure: they are rolled back
        try:
            async with asyncio.TaskGroup() as group:
                tasks = {t.pair.target.id: group.create_task(one(t)) for t in self.targets}
        except BaseExceptionGroup as failure:
            first = failure.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return {disk: task.result() for disk, task in tasks.items()}

    async def _disk_retrying(self, target: Target) -> RestoreStats:
        """Retry a dependency that went away until the reconnect time runs out; each
        try resumes from the disk's checkpoint."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request.options.reconnect_s
        while True:
            try:
                return await self._disk(target)
            except EdgebackError as exc:
                if not exc.retryable or loop.time() >= deadline:
                    raise
                log.warning("vm_restore.disk_retry", disk=target.pair.target.id, code=exc.code)
                await asyncio.sleep(min(5.0, max(0.0, deadline - loop.time())))

    async def _disk(self, target: Target) -> RestoreStats:
        manifest, key = target.manifest, marks.checkpoint_key(self.request.restore_id)
        name = target.ref
        async with self._image(target, read_only=False) as image:
            resume = marks.resume_index(await image.metadata_get(key), name)

            async def save(next_index: int) -> None:
                await image.metadata_set(key, marks.encode_mark(name, next_index))

            changed, allocated = await self._scope(target, image)
            options = replace(
                self._options(target, resume, save), changed=changed, allocated=allocated
            )
            stats = await restore_disk(
                manifest, image, source=self.res.pool, key=self.res.keys.digest, options=options
            )
            await _zero_tail(image, manifest.header.image_size)
            # while the image is open (reopening it read-write costs more than the
            # removal): a task redelivered after this rewrites the whole disk, no harm
            await image.metadata_remove(key)
        return stats

    async def _scope(
        self, target: Target, image: RbdImage
    ) -> tuple[frozenset[int] | None, frozenset[int] | None]:
        """(changed, allocated) chunks of the target (``RestoreOptions``), from Ceph's
        object maps. Changed: when the target is the image the backup read and still
        holds the backup's snapshot, what differs from it since (a redelivered task
        asks again: what it wrote counts as changed). Allocated: otherwise, where the
        target holds data (a zero chunk elsewhere reads as zeros already)."""
        header = target.manifest.header
        changed = await self._changed_since_backup(target, image)
        if changed is not None:
            return changed, None
        held = await image.diff_extents(None, whole_object=True)
        return None, touched_chunks(
            (e for e in held if e.exists), header.image_size, header.chunk_size
        )

    async def _changed_since_backup(self, target: Target, image: RbdImage) -> frozenset[int] | None:
        """The chunks changed since the backup's own snapshot, or None when that cannot
        be trusted: another image, the snapshot gone or of another size, or a sample of
        the chunks Ceph's diff calls unchanged that does not match the manifest (an
        image reverted to an older snapshot, a wrong object map: the backup checks its
        incremental diffs the same way)."""
        header = target.manifest.header
        source, _, snap = header.image.rpartition("@")
        if not (
            self.request.options.changed_only and snap and source == f"{target.pool}/{target.image}"
        ):
            return None
        held = next((s for s in await image.list_snaps() if s.name == snap), None)
        if held is None or held.size != header.image_size:
            return None
        since = await image.diff_extents(snap, whole_object=True)
        changed = touched_chunks(since, header.image_size, header.chunk_size)
        wrong = await unchanged_that_differ(image, target.manifest, changed, self.res.keys.digest)
        if wrong:
            log.warning(
                "vm_restore.diff_untrusted", image=target.image, snap=snap, chunks=wrong[:16],
                note="every chunk is written",
            )  # fmt: skip
            return None
        log.info("vm_restore.changed_only", image=target.image, snap=snap,
                 chunks=len(changed), of=header.chunk_count)  # fmt: skip
        return changed

    def _options(
        self, target: Target, resume: int, save: Callable[[int], Awaitable[None]]
    ) -> RestoreOptions:
        streams, disk = self.request.options.streams_per_disk, target.pair.target.id
        report = self.res.progress

        def progress(p: Progress) -> None:
            if report is not None:
                report(disk, p)

        return RestoreOptions(
            # two writes in flight per stream (``rbd import`` keeps 10 of one image):
            # measured 12 % faster than one per stream in a serial restore
            in_flight=max(2, 4 * streams), writes=max(1, 2 * streams), grow=False,
            write_throttle=self.res.write_throttle, net_throttle=self.res.net_throttle,
            progress=progress, seal=self.res.keys.chunk_seal, resume_from=resume,
            checkpoint=save, checkpoint_interval_s=self.request.options.checkpoint_interval_s,
        )  # fmt: skip

    async def _failed(
        self, exc: EdgebackError, safety: marks.SafetyMark | None
    ) -> VmRestoreOutcome:
        rolled: list[str] = []
        if safety is not None:
            for target in self.targets:
                await self._rollback(target)
                rolled.append(target.pair.target.id)
            await self.res.platform.delete_snapshot(self.vm.id, SnapshotId(safety.snapshot_id))
            # the images hold their old content again: their checkpoints no longer apply
            await self._clear_marks()
        log.error(
            "vm_restore.failed", vm=self.vm.id, code=exc.code, error=exc.message,
            rolled_back=rolled,
        )  # fmt: skip
        note = f" (rolled back: {', '.join(rolled)})" if rolled else " (not rolled back)"
        return VmRestoreOutcome(
            status="failed", code=exc.code, message=exc.message + note, rolled_back=tuple(rolled)
        )

    async def _rollback(self, target: Target) -> None:
        key = marks.safety_key(self.request.restore_id)
        async with self._image(target, read_only=False) as image:
            mark = marks.decode_safety(await image.metadata_get(key))
            if mark is None:
                raise AssertionError(f"no safety snapshot mark on {target.image}")
            await image.rollback_to_snap(mark.rbd_snap)

    async def _clear_marks(self) -> None:
        for target in self.targets:
            async with self._image(target, read_only=False) as image:
                await image.metadata_remove(marks.checkpoint_key(self.request.restore_id))
                await image.metadata_remove(marks.safety_key(self.request.restore_id))


async def unchanged_that_differ(
    image: RbdImage, manifest: Manifest, changed: frozenset[int], key: PoolKey
) -> list[int]:
    """Indices of a random sample of the chunks outside ``changed`` whose bytes on the
    image do not have the manifest's digest (``sample_unchanged``'s size: 1 %, 1 to 8)."""
    unchanged = (i for i in range(len(manifest.entries)) if i not in changed)
    sample = sample_unchanged(unchanged, random.Random())
    loop = asyncio.get_running_loop()

    async def differs(index: int) -> bool:
        data = await image.read(*manifest.chunk_span(index))
        return await loop.run_in_executor(None, cpu.digest_of, key, data) != manifest.entries[index]

    verdicts = await asyncio.gather(*(differs(index) for index in sample))
    return [index for index, wrong in zip(sample, verdicts, strict=True) if wrong]


async def _zero_tail(image: RbdImage, source_size: int) -> None:
    """A target larger than the source reads as zeros past the source's end."""
    size = await image.size()
    if size > source_size:
        await image.write_zeroes(source_size, size - source_size)
        await image.flush()
