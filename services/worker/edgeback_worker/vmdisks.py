"""The disks of one VM snapshot into the job's pool (docs/runs.md, 3.5-3.6).

``disks_per_vm`` disks at a time, each with ``streams_per_disk`` read streams, through
the process's read and network throttles of the job. RBD names come from the Ceph
storage's templates. An incremental or cumulative reads only what changed since its
base (``catalog.backup_set.base``); a base whose RBD snapshot or manifest is gone turns
the VM's backup into a full, with a warning. Each disk is committed under the run's
version name (``backup_checkpointed``: adopted when already there, resumed from its
checkpoint otherwise) and recorded with ``catalog.run.disk.commit``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from edgeback_blocks.chunk import Compression
from edgeback_blocks.ids import ManifestId, PoolId
from edgeback_blocks.keys import ClientKeys
from edgeback_blocks.manifest import BackupType, Manifest, ManifestHeader, created_ms
from edgeback_blocks.pipeline import BackupOptions, BackupStats, DedupMode, Progress
from edgeback_blocks.pipeline.checkpointed import backup_checkpointed
from edgeback_blocks.rbd import RbdCluster
from edgeback_cli.commands import PoolHandle
from edgeback_cli.refs import ImageRef
from edgeback_core.errors import (
    DeadlineExceededError,
    EdgebackError,
    NotFoundError,
    StorageNodeUnreachableError,
    UnavailableError,
)
from edgeback_core.messages import backups as b
from edgeback_core.messages.jobs import JobInfo
from edgeback_core.messages.runs import (
    BackupSetCreated,
    DiskStats,
    RunProgress,
    RunVmTask,
)
from edgeback_core.messages.runs import BackupType as WireType
from edgeback_core.messages.runs import VmOutcome as VmOutcomeName
from edgeback_core.retry import lost_connection
from edgeback_platform.models import Disk, Vm, VmSnapshot
from edgeback_platform.templates import RbdTemplates
from edgeback_worker.runcontext import RunContext, now
from edgeback_worker.runrules import ProgressGate, stream_depth, version_for_run

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class VmOutcome:
    outcome: VmOutcomeName
    code: str = ""
    message: str = ""
    failed_disks: list[b.FailedDisk] = field(default_factory=list)
    backup_set_id: str | None = None
    stats: DiskStats = field(default_factory=DiskStats)
    warnings: list[str] = field(default_factory=list)
    snapshot_names: tuple[str, ...] = ()
    """RBD snapshot names of the disks this backup read."""
    backup_type: WireType = "full"


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskPlan:
    disk: Disk
    image: ImageRef
    """Pool, image and the snapshot to read."""
    base: b.DiskVersionInfo | None = None
    parent: Manifest | None = None


@dataclass(slots=True, kw_only=True)
class VmDisks:
    ctx: RunContext
    task: RunVmTask
    job: JobInfo
    cluster: RbdCluster
    templates: RbdTemplates
    vm: Vm
    snapshot: VmSnapshot
    _done: dict[str, Progress] = field(default_factory=dict)
    _reports: asyncio.Queue[None] = field(default_factory=lambda: asyncio.Queue(maxsize=1))
    _node_retries: int = 0
    """Storage-node requests retried after a lost connection (the VM's warning)."""

    async def run(self) -> VmOutcome:
        version = version_for_run(self.task.run_id)
        base = await self.ctx.catalog.base(
            self.vm.id, self.job.id, self.job.spec.target.pool, self.task.backup_type
        )
        with self._node_outage():
            async with self.ctx.pool(self.job, self._node_retried) as (pool, keys):
                plans, warnings = await self._plans(base, pool, keys)
                kind: WireType = "full" if plans[0].parent is None else self.task.backup_type
                base_id = None if kind == "full" or base.backup_set is None else base.backup_set.id
                gate = asyncio.Semaphore(self.job.spec.options.disks_per_vm)

                async def one(plan: DiskPlan) -> b.DiskCommitReply:
                    async with gate:
                        return await self._disk(
                            plan, pool, keys, version=version, kind=kind, base_id=base_id
                        )

                async with asyncio.TaskGroup() as group:
                    reporter = group.create_task(self._report_progress())
                    results = await asyncio.gather(*(one(p) for p in plans), return_exceptions=True)
                    reporter.cancel()
        if self._node_retries:
            warnings.append(
                f"the storage node did not answer for a while: {self._node_retries} "
                "request(s) tried again within the reconnect time"
            )
        return await self._outcome(plans, results, warnings, kind)

    def _node_retried(self, attempts: int, delay: float, exc: EdgebackError) -> None:
        if lost_connection(exc):
            self._node_retries += 1

    async def _plans(
        self, base: b.BackupSetWithDisks, pool: PoolHandle, keys: ClientKeys
    ) -> tuple[list[DiskPlan], list[str]]:
        """Every disk with its base, or every disk full with the reason in a warning."""
        plans = [self._named(disk) for disk in self.vm.disks]
        if base.backup_set is None:
            return plans, []
        based: list[DiskPlan] = []
        for plan in plans:
            found = next((d for d in base.disks if d.disk_id == plan.disk.id), None)
            problem = "no version of it in the base" if found is None else None
            if found is not None:
                problem, parent = await self._parent(plan, found, pool, keys)
            if problem is not None:
                warning = (
                    f"full backup instead of {self.task.backup_type}: disk {plan.disk.id} {problem}"
                )
                log.warning("vm.base_missing", run_id=self.task.run_id, vm=self.vm.id, why=warning)
                return plans, [warning]
            based.append(DiskPlan(disk=plan.disk, image=plan.image, base=found, parent=parent))
        return based, []

    async def _parent(
        self, plan: DiskPlan, found: b.DiskVersionInfo, pool: PoolHandle, keys: ClientKeys
    ) -> tuple[str | None, Manifest | None]:
        async with (
            self.cluster.open_pool(plan.image.pool) as rbd,
            rbd.open_image(plan.image.image) as image,
        ):
            if not await image.snap_exists(found.snapshot_name):
                return f"base snapshot {found.snapshot_name} is gone", None
        try:
            data = await pool.get_manifest(self.vm.id, plan.disk.id, found.manifest_version)
        except NotFoundError:
            return f"base manifest {found.manifest_name} is gone", None
        return None, Manifest.decode(data, keys.manifest)

    def _named(self, disk: Disk) -> DiskPlan:
        t = self.templates
        image = (
            t.instance_image(self.vm.id)
            if disk.volume_id is None
            else t.volume_image(disk.volume_id)
        )
        snap = t.snapshot_name(self.snapshot.for_disk(disk.id))
        return DiskPlan(disk=disk, image=ImageRef(disk.pool, image, snap))

    async def _disk(
        self, plan: DiskPlan, pool: PoolHandle, keys: ClientKeys, *, version: str,
        kind: WireType, base_id: str | None,
    ) -> b.DiskCommitReply:  # fmt: skip
        disk, ref = plan.disk, plan.image
        async with (
            self.cluster.open_pool(ref.pool) as rbd,
            rbd.open_image(ref.image, snapshot=ref.snap) as image,
        ):
            header = self._header(plan, await image.size(), version, kind)
            with self._node_outage():
                done = await backup_checkpointed(
                    image, header=header, pool=pool, keys=keys, parent=plan.parent,
                    base_snap=None if plan.base is None else plan.base.snapshot_name,
                    options=self._options(disk.id),
                )  # fmt: skip
        commit = b.DiskCommit(
            actor=self.ctx.catalog.actor, run_id=self.task.run_id, vm_id=self.vm.id,
            disk_id=disk.id, backup_type=kind, taken_at=self.snapshot.created,
            base_backup_set_id=base_id, manifest_name=f"{self.vm.id}/{disk.id}/{version}",
            manifest_version=version, size_bytes=header.image_size,
            stats=_stats(done.stats), snapshot_name=ref.snap or "",
            snapshot_kept=self.job.spec.options.keep_latest_snapshot,
            worker_id=self.ctx.worker_id,
        )  # fmt: skip
        return await self.ctx.catalog.disk_commit(commit)

    @contextlib.contextmanager
    def _node_outage(self) -> Iterator[None]:
        """The storage node lost for longer than the job's reconnect time (each request
        was retried that long, ``reconnect_policy``) fails the disk, or the VM, with
        ``storage_node_unreachable``; its checkpoint stays for the retry."""
        try:
            yield
        except (UnavailableError, DeadlineExceededError) as exc:
            if isinstance(exc, StorageNodeUnreachableError) or not lost_connection(exc):
                raise
            minutes, url = (
                self.job.spec.options.reconnect_minutes,
                self.job.spec.target.pool.node_url,
            )
            log.warning("node.lost", run_id=self.task.run_id, vm=self.vm.id, url=url, code=exc.code)
            raise StorageNodeUnreachableError(
                f"storage node {url} unreachable for longer than the reconnect time "
                f"({minutes} min): {exc.message}",
                url=url,
            ) from exc

    def _header(self, plan: DiskPlan, size: int, version: str, kind: WireType) -> ManifestHeader:
        parent = None
        if plan.base is not None and plan.parent is not None:
            parent = ManifestId(f"{self.vm.id}/{plan.disk.id}/{plan.base.manifest_version}")
        return ManifestHeader(
            vm_id=self.vm.id, disk_id=plan.disk.id, image=str(plan.image), image_size=size,
            created_ms=created_ms(self.snapshot.created), backup_type=BackupType(kind),
            pool_id=PoolId(self.job.spec.target.pool.name), parent=parent, version=version,
        )  # fmt: skip

    def _options(self, disk_id: str) -> BackupOptions:
        opts, throttles = self.job.spec.options, self.ctx.throttles(self.job)

        def progress(p: Progress) -> None:
            self._done[disk_id] = p
            if self._reports.empty():
                self._reports.put_nowait(None)

        return BackupOptions(
            compression=Compression.FAST if opts.compression else Compression.NONE,
            dedup=DedupMode(opts.dedup_mode),
            streams=opts.streams_per_disk,
            depth=(depth := stream_depth(opts.resume_buffer_mib)),
            uploads=min(self.ctx.settings.uploads_per_disk, opts.streams_per_disk * depth),
            read_throttle=throttles.read,
            net_throttle=throttles.net,
            progress=progress,
            checkpoint_interval_s=self.ctx.settings.checkpoint_interval_s,
        )

    async def _report_progress(self) -> None:
        """``RunProgress`` of this VM at most every ``progress_interval_s`` seconds."""
        gate = ProgressGate(
            interval_s=self.ctx.settings.progress_interval_s,
            clock=asyncio.get_running_loop().time,
        )
        while True:
            await self._reports.get()
            if not gate.allow():
                continue
            done = sum(p.done_bytes for p in self._done.values())
            total = sum(p.total_bytes for p in self._done.values())
            rate = sum(p.rate_bps for p in self._done.values())
            try:
                await self.ctx.publish(
                    RunProgress(
                        run_id=self.task.run_id, job_id=self.task.job_id, bytes_done=done,
                        bytes_total=total, rate_bps=rate,
                        eta_s=(total - done) / rate if rate > 0 else None, at=now(),
                        vm=self.task.vm,
                    )
                )  # fmt: skip
            except EdgebackError as exc:  # progress is best effort; the backup goes on
                log.warning("progress.publish_failed", code=exc.code)

    async def _outcome(
        self,
        plans: list[DiskPlan],
        results: list[b.DiskCommitReply | BaseException],
        warnings: list[str],
        kind: WireType,
    ) -> VmOutcome:
        failed, commits = [], []
        for plan, result in zip(plans, results, strict=True):
            if isinstance(result, EdgebackError):
                failed.append(
                    b.FailedDisk(disk_id=plan.disk.id, code=result.code, message=result.message)
                )
            elif isinstance(result, BaseException):
                raise result
            else:
                commits.append(result)
        names = tuple(p.image.snap or "" for p in plans)
        if failed:
            first = failed[0]
            return VmOutcome(
                outcome="failed", code=first.code, message=first.message, failed_disks=failed,
                warnings=warnings, snapshot_names=names, backup_type=kind,
            )  # fmt: skip
        set_id = commits[0].disk_version.backup_set_id
        await self.ctx.publish(
            BackupSetCreated(
                backup_set_id=set_id, run_id=self.task.run_id, job_id=self.task.job_id,
                vm=self.task.vm, backup_type=kind, pool_node_url=self.job.spec.target.pool.node_url,
                pool_name=self.job.spec.target.pool.name, disk_count=len(commits),
                taken_at=self.snapshot.created, at=now(),
            )
        )  # fmt: skip
        return VmOutcome(
            outcome="succeeded", backup_set_id=set_id, warnings=warnings, snapshot_names=names,
            stats=_sum([c.disk_version.stats for c in commits]), backup_type=kind,
        )  # fmt: skip


def _stats(stats: BackupStats | None) -> DiskStats:
    if stats is None:
        return DiskStats()
    return DiskStats(
        bytes_read=stats.bytes_read, bytes_new=stats.bytes_new,
        bytes_deduplicated=stats.bytes_deduped, bytes_sparse=stats.bytes_sparse,
        bytes_unchanged=stats.bytes_unchanged, duration_s=stats.duration_s,
    )  # fmt: skip


def _sum(all_stats: list[DiskStats]) -> DiskStats:
    return DiskStats(
        bytes_read=sum(s.bytes_read for s in all_stats),
        bytes_new=sum(s.bytes_new for s in all_stats),
        bytes_deduplicated=sum(s.bytes_deduplicated for s in all_stats),
        bytes_sparse=sum(s.bytes_sparse for s in all_stats),
        bytes_unchanged=sum(s.bytes_unchanged for s in all_stats),
        duration_s=max((s.duration_s for s in all_stats), default=0.0),
    )
