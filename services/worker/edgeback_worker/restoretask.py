"""``RestoreVmTask``: one restore point written into its target VM, on any worker of the
restore's backup host (docs/restores.md, "The restore run").

As a backup's VM task (``vmtask``): the two leases first (``restore:<id>`` up to the
restore's parallel VMs, ``hypervisor:<platform>/<physical host>`` up to its VMs per
physical host; held by the task ``<restore>/<backup set>``), then the claim in the
catalog (another live worker's: deferred; a dead one's: taken over), renewed with the
leases while the VM is restored; ``cancelling`` seen at a renewal cancels the restore
of the VM. The VM itself is ``vm_restore.restore_vm``, fed from the catalog (the
restore, its point, the target platform and its Ceph storage) and this host's pool
files; its outcome (succeeded with per-disk figures, refused with every code, failed
with ``rolled_back``) is published (``RestoreVmFinished``) and recorded with
``catalog.restore.vm.finish`` before the leases are released. The worker whose finish
ended the restore runs the post-script (the catalog announces ``RestoreFinished``).

Catalog outages, as a backup's VM task: every catalog call is tried again until the
restore's reconnect time (lost before the claim: the task is deferred). Unlike a
backup, a restore goes on writing while its renewals go unheard (its writes need no
catalog, and nobody can take the VM over while the catalog is away); its finish is
tried until the catalog answers, fenced by the claim. A claim another worker took over
(``lease_lost`` at a renewal or at the finish) stops the VM here at once, without a
finish: it is that worker's now.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import msgspec
import structlog

from edgeback_blocks.pipeline import Progress, RestoreStats
from edgeback_blocks.rbd import RbdCluster
from edgeback_core.errors import (
    DeferredError,
    EdgebackError,
    LeaseLostError,
    NotFoundError,
    RunCancelledError,
    ScriptFailedError,
)
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import restores as rs
from edgeback_core.messages.jobs import JobOptions
from edgeback_platform.models import VmId
from edgeback_worker.restorechecks import Refusal
from edgeback_worker.restoreinstant import InstantInputs, restore_vm_instantly
from edgeback_worker.runcontext import RunContext, now
from edgeback_worker.runrules import catalog_policy, rate_windows, restore_policy
from edgeback_worker.scripts import run_job_script
from edgeback_worker.vm_restore import (
    RestoreResources,
    VmRestoreOptions,
    VmRestoreOutcome,
    VmRestoreRequest,
    restore_vm,
)
from edgeback_worker.vmbackup import storage_of, templates_of
from edgeback_worker.vmtask import (
    ClaimedElsewhereError,
    deferred_while_lost,
    held_leases,
    keep_claim,
)

log = structlog.get_logger(__name__)

_OVER = frozenset({"succeeded", "failed", "partially_succeeded", "cancelled", "expired"})
RESTORE_CLAIM_STOPS: tuple[type[EdgebackError], ...] = (LeaseLostError,)
"""A restore's writes need no catalog: only a take-over stops them (``keep_claim``)."""


def vm_restore_options(opts: rs.RestoreOptions, ctx: RunContext) -> VmRestoreOptions:
    """The restore's options as ``restore_vm`` takes them (speed windows in the host's
    time zone, the worker's checkpoint interval)."""
    return VmRestoreOptions(
        snapshot_before=opts.snapshot_before_overwrite,
        keep_snapshot=opts.keep_snapshot_on_success,
        start_vm_after=opts.start_vm_after,
        changed_only=opts.changed_only,
        disks_per_vm=opts.disks_per_vm,
        streams_per_disk=opts.streams_per_disk,
        restore_speed=tuple(rate_windows(opts.restore_speed)),
        transfer_speed=tuple(rate_windows(opts.transfer_speed)),
        zone=ctx.settings.zone,
        reconnect_s=opts.reconnect_minutes * 60.0,
        checkpoint_interval_s=ctx.settings.checkpoint_interval_s,
    )


def disk_stats(target_disk: str, source_disk: str, stats: RestoreStats) -> rs.RestoreDiskStats:
    return rs.RestoreDiskStats(
        disk_id=target_disk, source_disk_id=source_disk, bytes_written=stats.bytes_written,
        bytes_zeroed=stats.bytes_zeroed, bytes_fetched=stats.bytes_fetched,
        bytes_left=stats.bytes_left,
        chunks_fetched=stats.chunks_fetched, duration_s=round(stats.duration_s, 3),
    )  # fmt: skip


def finish_of(task: rs.RestoreVmTask, out: VmRestoreOutcome) -> rs.RestoreVmFinish:
    """The catalog's record of ``out`` (``actor`` is filled in by the caller)."""
    source_of = {m.target_disk_id: m.source_disk_id for m in task.disks}
    return rs.RestoreVmFinish(
        actor=m.ActorRef(), restore_id=task.restore_id, backup_set_id=task.backup_set_id,
        attempt=task.attempt, outcome=out.status, code=out.code, message=out.message,
        rolled_back=list(out.rolled_back),
        refusals=[
            rs.RestoreRefusal(code=f.code, reason=f.reason, disk_id=f.disk_id or "")
            for f in out.refusals
        ],
        stats=[
            disk_stats(disk, source_of.get(disk, disk), stats)
            for disk, stats in sorted(out.stats.items())
        ],
        snapshot_id=out.snapshot_id, vm_started=out.started,
    )  # fmt: skip


def _failed(task: rs.RestoreVmTask, code: str, message: str) -> rs.RestoreVmFinish:
    return finish_of(task, VmRestoreOutcome(status="failed", code=code, message=message))


@dataclass(slots=True, kw_only=True)
class _Reports:
    """Each disk's latest progress, published as ``RestoreProgress`` at most every
    ``interval_s`` per disk by :meth:`run` (the final report always)."""

    ctx: RunContext
    task: rs.RestoreVmTask
    interval_s: float
    latest: dict[str, Progress] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def update(self, disk: str, progress: Progress) -> None:
        self.latest[disk] = progress
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self.flush()
            await asyncio.sleep(self.interval_s / 4)

    async def flush(self, *, final: bool = False) -> None:
        for disk, p in list(self.latest.items()):
            last = self.sent.get(disk)
            moment = time.monotonic()
            due = last is None or moment - last >= self.interval_s or p.final or final
            if not due or last == -1.0:
                continue
            self.sent[disk] = -1.0 if (p.final or final) else moment
            left = max(0, p.total_bytes - p.done_bytes)
            await self.ctx.publish(
                rs.RestoreProgress(
                    restore_id=self.task.restore_id, backup_set_id=self.task.backup_set_id,
                    target_vm=self.task.target_vm, disk_id=disk, bytes_done=p.done_bytes,
                    bytes_total=p.total_bytes, rate_bps=round(p.rate_bps, 1),
                    eta_s=round(left / p.rate_bps, 1) if p.rate_bps > 0 else None, at=now(),
                )
            )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RestoreVmTasks:
    ctx: RunContext

    async def run(self, task: rs.RestoreVmTask) -> None:
        with deferred_while_lost():  # the restore says the reconnect time: the default till then
            restore = await self.ctx.reconnecting(JobOptions()).catalog.restore(task.restore_id)
        if restore.state in _OVER:
            log.info("restore_vm.restore_over", restore_id=restore.id, state=restore.state)
            return
        point = next((p for p in restore.points if p.backup_set_id == task.backup_set_id), None)
        if point is None:
            raise NotFoundError(f"{task.backup_set_id} is no restore point of {restore.id}")
        mine = RestoreVmTasks(self.ctx.reconnecting(restore.spec.options))
        try:
            await mine._run(task, restore, point)
        except LeaseLostError as exc:  # another worker took the VM over: it is theirs now
            log.warning(
                "restore_vm.claim_lost", restore_id=task.restore_id, vm=task.target_vm.vm_id,
                error=exc.message,
            )  # fmt: skip

    async def _run(
        self, task: rs.RestoreVmTask, restore: rs.RestoreInfo, point: rs.RestorePoint
    ) -> None:
        opts, vm = restore.spec.options, task.target_vm
        wanted = [
            (f"restore:{restore.id}", opts.parallel_vms),
            (f"hypervisor:{vm.platform_id}/{vm.physical_host_id}", opts.vms_per_physical_host),
        ]
        holder = f"{restore.id}/{task.backup_set_id}"
        heard = _Heard()
        async with held_leases(self.ctx, wanted, holder) as leases:
            with deferred_while_lost():
                state = await self._claimed(task, heard)
            if state is None:
                return
            if state == "cancelling":
                done = _failed(task, RunCancelledError.code, "cancelled before it started")
            else:
                await self.ctx.publish(
                    rs.RestoreVmStarted(
                        restore_id=task.restore_id, backup_set_id=task.backup_set_id,
                        target_vm=vm, attempt=task.attempt, worker_id=self.ctx.worker_id,
                        at=now(),
                    )
                )  # fmt: skip
                done = await self._restored_unless_cancelled(task, restore, point, leases, heard)
                await self._still_held(task, heard)
            # recorded while the slots are held, as backups do (docs/runs.md 3.7)
            ended = await self._finish(task, done)
        if ended:
            await self._restore_ended(restore)

    async def _claimed(self, task: rs.RestoreVmTask, heard: _Heard) -> str | None:
        """The restore's state when this worker holds the VM; None when it is over."""
        claim_s, asked = self.ctx.settings.claim_s, time.monotonic()
        reply = await self.ctx.catalog.restore_vm_start(
            task.restore_id, task.backup_set_id, task.attempt, claim_s
        )
        held = reply.task
        if held.state == "running" and held.worker_id == self.ctx.worker_id:
            heard.at = asked
            return reply.restore_state or "running"
        if held.state == "running":
            raise ClaimedElsewhereError(
                f"restore VM {task.target_vm.vm_id} is claimed by {held.worker_id}",
                delay_s=claim_s / 3,
            )
        if held.state == "pending":
            vm = task.target_vm.vm_id
            raise DeferredError(f"restore VM {vm} cannot be claimed yet", delay_s=claim_s / 3)
        log.info("restore_vm.already_done", restore_id=task.restore_id, state=held.state)
        return None

    async def _restored_unless_cancelled(
        self,
        task: rs.RestoreVmTask,
        restore: rs.RestoreInfo,
        point: rs.RestorePoint,
        leases: list[b.LeaseInfo],
        heard: _Heard,
    ) -> rs.RestoreVmFinish:
        async def renew_claim() -> str | None:
            return await self._renew(task, heard)

        done: rs.RestoreVmFinish | None = None
        lost: list[LeaseLostError] = []
        try:
            async with asyncio.TaskGroup() as group:
                renewing = group.create_task(
                    keep_claim(
                        self.ctx, renew_claim, leases, f"restore {task.restore_id}",
                        stops=RESTORE_CLAIM_STOPS,
                    )
                )  # fmt: skip
                try:
                    done = await self._restored(task, restore, point)
                finally:
                    renewing.cancel()
        except* RunCancelledError:  # the renewal saw the cancel: the VM's restore stopped
            log.info("restore_vm.cancelled", restore_id=task.restore_id, vm=task.target_vm.vm_id)
        except* LeaseLostError as group:
            lost.extend(e for e in group.exceptions if isinstance(e, LeaseLostError))
        if lost:  # another worker took the VM over: its restore stopped here, no finish
            raise lost[0]
        if done is not None:
            return done
        return _failed(task, RunCancelledError.code, "cancelled while it was restored")

    async def _renew(self, task: rs.RestoreVmTask, heard: _Heard) -> str | None:
        """The claim renewed (``lease_lost`` if another worker holds it); the restore's state."""
        asked = time.monotonic()
        reply = await self.ctx.catalog.restore_vm_renew(
            task.restore_id, task.backup_set_id, task.attempt, self.ctx.settings.claim_s
        )
        heard.at = asked
        return reply.restore_state

    async def _still_held(self, task: rs.RestoreVmTask, heard: _Heard) -> None:
        """Before the outcome goes out: ``lease_lost`` when the VM may have been taken
        over, i.e. when the catalog last confirmed the claim too long ago for it to be
        alive for sure (the finish is fenced too, but its event is published first, and
        a stale one would shadow the new holder's under the same message id)."""
        if time.monotonic() - heard.at < self.ctx.settings.claim_s / 2:
            return
        try:
            await self._renew(task, heard)
        except LeaseLostError:
            raise
        except EdgebackError as exc:  # unconfirmed (the catalog away: nobody took it either)
            log.warning("restore_vm.claim_unconfirmed", restore_id=task.restore_id, code=exc.code)

    async def _restored(
        self, task: rs.RestoreVmTask, restore: rs.RestoreInfo, point: rs.RestorePoint
    ) -> rs.RestoreVmFinish:
        try:
            await self._pre_script(task, restore)
            reports = _Reports(
                ctx=self.ctx, task=task, interval_s=self.ctx.settings.progress_interval_s
            )
            out = await self._reported(task, restore, point, reports)
            await reports.flush(final=True)
        except EdgebackError as exc:
            log.warning(
                "restore_vm.failed", restore_id=task.restore_id, vm=task.target_vm.vm_id,
                code=exc.code, error=exc.message,
            )  # fmt: skip
            return _failed(task, exc.code, exc.message)
        return finish_of(task, out)

    async def _reported(
        self,
        task: rs.RestoreVmTask,
        restore: rs.RestoreInfo,
        point: rs.RestorePoint,
        reports: _Reports,
    ) -> VmRestoreOutcome:
        """``_restore_vm`` with ``reports`` publishing beside it. Its error is raised
        after the group, as it is: raised inside, the TaskGroup would wrap it in an
        ExceptionGroup that ``except EdgebackError`` misses, and the task would crash
        and be redelivered until dead-lettered instead of ending ``failed``."""
        async with asyncio.TaskGroup() as group:
            reporter = group.create_task(reports.run())
            try:
                outcome: VmRestoreOutcome | EdgebackError = await self._restore_vm(
                    task, restore, point, reports
                )
            except EdgebackError as exc:
                outcome = exc
            finally:
                reporter.cancel()
        if isinstance(outcome, EdgebackError):
            raise outcome
        return outcome

    async def _restore_vm(
        self,
        task: rs.RestoreVmTask,
        restore: rs.RestoreInfo,
        point: rs.RestorePoint,
        reports: _Reports,
    ) -> VmRestoreOutcome:
        new_path = restore.spec.target.new_path is not None
        request = VmRestoreRequest(
            restore_id=restore.id, disks=tuple(point.disks),
            target_vm_id=VmId(task.target_vm.vm_id),
            mapping=tuple(task.disks) if new_path else None,
            options=vm_restore_options(restore.spec.options, self.ctx),
        )  # fmt: skip
        opts, target = restore.spec.options, task.target_vm
        policy = restore_policy(opts)
        async with self.ctx.platform_with(target.platform_id, policy) as platform:
            try:
                vm = await platform.get_vm(VmId(target.vm_id))
            except NotFoundError as exc:
                return _refused(rs.REFUSE_TARGET_VM_GONE, exc.message)
            try:
                storage = await storage_of(self.ctx, target.platform_id, task.host_id, vm)
            except NotFoundError as exc:  # no registered Ceph storage holds its disks
                return _refused(rs.REFUSE_TARGET_NOT_ON_CEPH, exc.message)
            throttles = self.ctx.throttles_of(
                (f"restore:{restore.id}", 0), opts.restore_speed, opts.transfer_speed
            )
            async with (
                RbdCluster.connect(storage.conf_path, storage.client_id) as cluster,
                self.ctx.pool_at(point.pool, policy) as (pool, keys),
            ):
                resources = RestoreResources(
                    platform=platform, pool=pool, keys=keys, cluster=cluster,
                    templates=templates_of(storage), write_throttle=throttles.read,
                    net_throttle=throttles.net, progress=reports.update,
                )  # fmt: skip
                if opts.instant:
                    inputs = InstantInputs(
                        restore_key=f"{restore.id}/{task.backup_set_id}", storage=storage,
                        node_url=point.pool.node_url,
                        keep_moved_aside=opts.keep_snapshot_on_success,
                        progress_interval_s=self.ctx.settings.progress_interval_s,
                    )  # fmt: skip
                    return await restore_vm_instantly(request, resources, inputs)
                return await restore_vm(request, resources, vm)

    async def _pre_script(self, task: rs.RestoreVmTask, restore: rs.RestoreInfo) -> None:
        script = restore.spec.options.pre_script
        if script is None:
            return
        env = {"restore_id": task.restore_id, "phase": "pre", "vm_id": task.target_vm.vm_id}
        result = await run_job_script(script, env)
        if not result.ok:
            raise ScriptFailedError(
                f"pre-script exited {result.exit_code} (None: timed out)", output=result.output
            )

    async def _finish(self, task: rs.RestoreVmTask, done: rs.RestoreVmFinish) -> bool:
        """Publish and record the VM's outcome; True when this finish ended the restore."""
        # published first: the last finish makes the catalog announce RestoreFinished,
        # which must not reach consumers ahead of this; a worker dying in between repeats
        # both under the same message id
        await self.ctx.publish(
            rs.RestoreVmFinished(
                restore_id=done.restore_id, backup_set_id=done.backup_set_id,
                target_vm=task.target_vm, attempt=done.attempt, outcome=done.outcome,
                code=done.code, message=done.message, rolled_back=done.rolled_back,
                refusals=done.refusals, stats=done.stats, at=now(),
            )
        )  # fmt: skip
        # the outcome must land, or the restore never ends: tried until the catalog
        # answers (a repeat after a lost reply is answered as done; fenced by the claim)
        catalog = self.ctx.catalog
        recording = catalog.reconnecting(catalog_policy(math.inf), catalog.on_retry)
        fenced = msgspec.structs.replace(done, worker_id=self.ctx.worker_id)
        reply = await recording.restore_vm_finish(fenced)
        return reply.applied and reply.restore_state in _OVER

    async def _restore_ended(self, restore: rs.RestoreInfo) -> None:
        ended = await self.ctx.catalog.restore(restore.id)
        log.info("restore.finished", restore_id=restore.id, outcome=ended.state)
        script = restore.spec.options.post_script
        if script is not None:
            env = {"restore_id": restore.id, "phase": "post", "outcome": ended.state}
            await run_job_script(script, env)


@dataclass(slots=True)
class _Heard:
    """When (monotonic) the request the catalog last confirmed the claim for was sent."""

    at: float = -math.inf


def _refused(code: str, reason: str) -> VmRestoreOutcome:
    return VmRestoreOutcome(
        status="refused", code=code, message=reason, refusals=(Refusal(code=code, reason=reason),)
    )
