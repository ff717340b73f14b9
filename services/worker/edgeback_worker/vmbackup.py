"""Back up one VM a worker holds the claim of (docs/runs.md, 3.3-3.6).

Eligibility (refused: gone, shelved, not on Ceph, no running guest agent; skipped: its
Ceph pool at or under the job's free-space thresholds, checked before the snapshot),
the pre-script, the consistent snapshot through the platform under an idempotency key
derived from run and VM (a redelivered task gets the same snapshot back), the disks
(``vmdisks``), then the release of the snapshots "keep latest snapshot" does not keep.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import structlog

from edgeback_blocks.rbd import RbdCluster
from edgeback_core.errors import NotFoundError, ScriptFailedError
from edgeback_core.messages import catalog as m
from edgeback_core.messages.jobs import JobInfo
from edgeback_core.messages.runs import (
    REFUSE_VM_GONE,
    RunVmTask,
    VmNotBackedUp,
    VmRefused,
    VmSkipped,
)
from edgeback_core.messages.runs import (
    VmOutcome as VmOutcomeName,
)
from edgeback_platform.client import EdgeCloudClient
from edgeback_platform.models import Vm, VmId, VmSnapshot
from edgeback_platform.templates import RbdTemplates
from edgeback_worker.eligibility import FreeSpaceRule, Verdict, refusal
from edgeback_worker.runcontext import RunContext, now
from edgeback_worker.runrules import snapshot_key, snapshots_to_release
from edgeback_worker.scripts import run_job_script
from edgeback_worker.vmdisks import VmDisks, VmOutcome

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class VmBackup:
    ctx: RunContext
    task: RunVmTask
    job: JobInfo
    taken: list[VmSnapshot] = field(default_factory=list)
    """The snapshot this backup took, once it has (what a cancelled run releases)."""
    asked: list[VmId] = field(default_factory=list)
    """The VM whose snapshot was asked for: the answer may have been cut off by a cancel."""

    async def run(self) -> VmOutcome:
        opts, ref = self.job.spec.options, self.task.vm
        async with self.ctx.platform(ref.platform_id, opts) as platform:
            try:
                vm = await platform.get_vm(VmId(ref.vm_id))
            except NotFoundError as exc:
                return await self._left_out(VmRefused, REFUSE_VM_GONE, exc.message)
            verdict = refusal(vm)
            if verdict is not None:
                return await self._left_out(VmRefused, verdict.code, verdict.reason)
            storage = await self._storage(vm)
            async with RbdCluster.connect(storage.conf_path, storage.client_id) as cluster:
                low = await self._low_space(cluster, vm)
                if low is not None:
                    return await self._left_out(VmSkipped, low.code, low.reason)
                await self._pre_script()
                self.asked.append(vm.id)
                snapshot = await platform.create_snapshot(
                    vm.id, quiesce=True, idempotency_key=snapshot_key(self.task.run_id, vm.id)
                )
                self.taken.append(snapshot)
                templates = templates_of(storage)
                done = await VmDisks(
                    ctx=self.ctx, task=self.task, job=self.job, cluster=cluster,
                    templates=templates, vm=vm, snapshot=snapshot,
                ).run()  # fmt: skip
            if done.outcome == "succeeded":
                await self._release(platform, vm, done, templates)
        return done

    async def _left_out(self, kind: type[VmNotBackedUp], code: str, reason: str) -> VmOutcome:
        task = self.task
        event = kind(
            run_id=task.run_id, job_id=task.job_id, vm=task.vm, code=str(code), message=reason,
            at=now(),
        )  # fmt: skip
        await self.ctx.publish(event)
        log.info("vm.left_out", run_id=task.run_id, vm=task.vm.vm_id, code=str(code))
        outcome: VmOutcomeName = "refused" if kind is VmRefused else "skipped"
        return VmOutcome(outcome=outcome, code=str(code), message=reason)

    async def _storage(self, vm: Vm) -> m.StorageInfo:
        return await storage_of(self.ctx, self.task.vm.platform_id, self.task.host_id, vm)

    async def _low_space(self, cluster: RbdCluster, vm: Vm) -> Verdict | None:
        opts = self.job.spec.options
        rule = FreeSpaceRule(
            min_free_percent=opts.skip_free_percent or 0.0, min_free_gib=opts.skip_free_gib or 0.0
        )
        if rule.min_free_percent <= 0 and rule.min_free_gib <= 0:
            return None
        for pool in sorted({d.pool for d in vm.disks}):
            space = await cluster.pool_space(pool)
            verdict = rule.verdict(
                pool=pool, free_bytes=space.free_bytes, total_bytes=space.total_bytes
            )
            if verdict is not None:
                return verdict
        return None

    async def _pre_script(self) -> None:
        script = self.job.spec.options.pre_script
        if script is None:
            return
        task = self.task
        env = {"run_id": task.run_id, "job_id": task.job_id, "phase": "pre", "vm_id": task.vm.vm_id}
        result = await run_job_script(script, env)
        if not result.ok:
            raise ScriptFailedError(
                f"pre-script exited {result.exit_code} (None: timed out)", output=result.output
            )

    async def _release(
        self, platform: EdgeCloudClient, vm: Vm, done: VmOutcome, templates: RbdTemplates
    ) -> None:
        """Delete the VM's edgeback snapshots that the next backups do not need."""
        keep: set[str] = set()
        if self.job.spec.options.keep_latest_snapshot:
            keep.update(done.snapshot_names)
            if done.backup_type != "full":  # the last full is the next cumulative's base
                pool = self.job.spec.target.pool
                full = await self.ctx.catalog.base(vm.id, self.job.id, pool, "cumulative")
                keep.update(d.snapshot_name for d in full.disks)
        ours = await self.ctx.catalog.snapshot_names(vm.id, self.job.id)
        ours.update(done.snapshot_names)
        snapshots: list[VmSnapshot] = await platform.list_snapshots(vm.id)
        for snap_id in snapshots_to_release(
            snapshots, ours=ours, keep=keep, rbd_name=templates.snapshot_name
        ):
            with contextlib.suppress(NotFoundError):
                await platform.delete_snapshot(vm.id, snap_id)
            log.info("snapshot.released", vm=vm.id, snapshot=snap_id)


async def storage_of(ctx: RunContext, platform_id: str, host_id: str, vm: Vm) -> m.StorageInfo:
    """The Ceph storage of ``platform_id`` holding ``vm``'s disks (this host's first)."""
    pools = {d.pool for d in vm.disks}
    found = [s for s in await ctx.catalog.storages(platform_id)]
    mine = [s for s in found if s.pool in pools]
    mine.sort(key=lambda s: s.host_id != host_id)
    if not mine:
        raise NotFoundError(
            f"no Ceph storage of platform {platform_id} holds pool(s) {', '.join(sorted(pools))}"
        )
    return mine[0]


def templates_of(storage: m.StorageInfo) -> RbdTemplates:
    """The storage's RBD name templates."""
    return RbdTemplates(
        volume=storage.volume_template,
        snapshot=storage.snapshot_template,
        instance=storage.instance_template,
    )


async def release_taken(ctx: RunContext, backup: VmBackup) -> None:
    """Delete the snapshot ``backup`` took (a cancelled run needs nothing of it; what it
    uploaded is left to garbage collection). Kept on failure: a retry reuses it."""
    ref, opts = backup.task.vm, backup.job.spec.options
    if not backup.asked:
        return
    async with ctx.platform(ref.platform_id, opts) as platform:
        if not backup.taken:  # cut off mid-request: the same key answers what it made
            key = snapshot_key(backup.task.run_id, backup.asked[0])
            made = await platform.create_snapshot(
                backup.asked[0], quiesce=False, idempotency_key=key
            )
            backup.taken.append(made)
        for snapshot in backup.taken:
            with contextlib.suppress(NotFoundError):
                await platform.delete_snapshot(snapshot.vm_id, snapshot.id)
            log.info("snapshot.released", vm=snapshot.vm_id, snapshot=snapshot.id, why="cancel")
