"""``RunVmTask``: one VM of a run, on any worker of its backup host (docs/runs.md, 3-4).

The two leases first (``run:<run_id>`` up to the job's parallel VMs and
``hypervisor:<platform>/<physical host>`` up to its VMs per physical host), held by the
task itself (``<run_id>/<vm_id>``) so a redelivered task gets its slots back; no slot
free: ``DeferredError`` (parked, not a failure). Then the claim of the VM's attempt in
the catalog (another live worker's claim: deferred too). Claim and leases are renewed
in the background while the VM is backed up (``vmbackup``). The outcome is recorded
with ``catalog.run.vm.finish`` before the leases are released; a failed attempt with
retries left is published again as the next attempt, not before
``vm_retry_interval_s``. The worker whose finish ended the run runs the post-script
(the catalog announces ``RunFinished``).

Catalog outages (docs/runs.md, "Reconnect time"): every catalog call of the task is
tried again until the job's reconnect time. A catalog lost for longer before the VM is
claimed defers the task; once claimed, the VM fails with ``catalog_unreachable`` (its
snapshot and checkpoint kept for the retry), and that outcome is recorded whenever the
catalog answers again. A claim another worker took over meanwhile (``lease_lost``)
stops the VM at once, without a finish: it is that worker's now.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog

from edgeback_core.bus.topology import run_routing_key
from edgeback_core.errors import (
    CatalogUnreachableError,
    DeferredError,
    EdgebackError,
    LeaseLostError,
    RunCancelledError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import backups as b
from edgeback_core.messages.jobs import JobInfo, JobOptions
from edgeback_core.messages.runs import RunVmTask, VmFinished, VmStarted
from edgeback_core.retry import lost_connection
from edgeback_worker.runcontext import RunContext, now
from edgeback_worker.runrules import catalog_policy, lease_holder, task_message_id
from edgeback_worker.scripts import run_job_script
from edgeback_worker.vmbackup import VmBackup, release_taken
from edgeback_worker.vmdisks import VmOutcome

log = structlog.get_logger(__name__)

_TERMINAL_RUN = frozenset({"succeeded", "failed", "partially_succeeded", "cancelled"})
BACKUP_CLAIM_STOPS: tuple[type[EdgebackError], ...] = (LeaseLostError, CatalogUnreachableError)


class ClaimedElsewhereError(DeferredError):
    """Another live worker runs the task (a duplicate delivery met its claim): deferred,
    and the task's slots, which this copy found held by the task, are left to it."""


@dataclass(frozen=True, slots=True)
class VmTasks:
    ctx: RunContext

    async def run(self, task: RunVmTask) -> None:
        due = task.not_before
        if due is not None and due > now():
            raise DeferredError("VM retry not due yet", delay_s=(due - now()).total_seconds())
        retried = LostCalls()
        with deferred_while_lost():  # the job says the reconnect time: the default till then
            job = await self.ctx.reconnecting(JobOptions(), retried).catalog.job(task.job_id)
        mine = VmTasks(self.ctx.reconnecting(job.spec.options, retried))
        try:
            await mine._run(task, job, retried)
        except LeaseLostError as exc:
            log.warning(
                "vm.claim_lost", run_id=task.run_id, vm=task.vm.vm_id, attempt=task.attempt,
                error=exc.message,
            )  # fmt: skip

    async def _run(self, task: RunVmTask, job: JobInfo, retried: LostCalls) -> None:
        async with self._leases(task, job) as leases:
            with deferred_while_lost():
                claimed = await self._claimed(task)
            if claimed is None:
                return
            if claimed == "cancelling":
                outcome = _cancelled(task, "before it started")
            else:
                await self.ctx.publish(
                    VmStarted(
                        run_id=task.run_id, job_id=task.job_id, vm=task.vm,
                        attempt=task.attempt, worker_id=self.ctx.worker_id, at=now(),
                    )
                )  # fmt: skip
                outcome = retried.noted(await self._backed_up_unless_cancelled(task, job, leases))
            # finished while the slots are still held (docs/runs.md 3.7), so the run log's
            # VmStarted..VmFinished of every VM lies inside its leases
            ended = await self._finish(task, job, outcome)
        if ended:
            await self._run_ended(task, job)

    async def _backed_up_unless_cancelled(
        self, task: RunVmTask, job: JobInfo, leases: list[b.LeaseInfo]
    ) -> VmOutcome:
        backup = VmBackup(self.ctx, task, job)
        outcome: VmOutcome | None = None
        stopped: list[EdgebackError] = []
        try:
            async with asyncio.TaskGroup() as group:
                renewing = group.create_task(self._renew(task, leases))
                try:
                    outcome = await self._backed_up(backup)
                finally:
                    renewing.cancel()
        except* RunCancelledError:  # the renewal saw the cancel: the backup was cancelled
            log.info("vm.cancelled", run_id=task.run_id, vm=task.vm.vm_id, attempt=task.attempt)
        except* (LeaseLostError, CatalogUnreachableError) as group:
            stopped.extend(e for e in group.exceptions if isinstance(e, EdgebackError))
        lost = [e for e in stopped if isinstance(e, LeaseLostError)]
        if lost:  # another worker took the VM over: nothing more of it is ours to do
            raise lost[0]
        if outcome is not None:
            return outcome
        if stopped:  # no renewal heard within the reconnect time: snapshot, checkpoint kept
            log.warning("vm.failed", run_id=task.run_id, vm=task.vm.vm_id, code=stopped[0].code)
            return VmOutcome(outcome="failed", code=stopped[0].code, message=stopped[0].message)
        await release_taken(self.ctx, backup)
        return _cancelled(task, "while it was backed up")

    async def _claimed(self, task: RunVmTask) -> str | None:
        """The run's state when this worker holds the attempt; None when it is over."""
        claim_s = self.ctx.settings.claim_s
        reply = await self.ctx.catalog.vm_start(task.run_id, task.vm, task.attempt, claim_s)
        held = reply.task
        if held.state == "running" and held.worker_id == self.ctx.worker_id:
            return reply.run_state or "running"
        if held.state == "running":
            raise ClaimedElsewhereError(
                f"VM {task.vm.vm_id} is claimed by {held.worker_id}", delay_s=claim_s / 3
            )
        if held.state == "pending":
            raise DeferredError(f"VM {task.vm.vm_id} cannot be claimed yet", delay_s=claim_s / 3)
        log.info("vm.already_done", run_id=task.run_id, vm=task.vm.vm_id, state=held.state)
        return None

    async def _backed_up(self, backup: VmBackup) -> VmOutcome:
        task = backup.task
        try:
            return await backup.run()
        except EdgebackError as exc:
            log.warning(
                "vm.failed", run_id=task.run_id, vm=task.vm.vm_id, attempt=task.attempt,
                code=exc.code, error=exc.message,
            )  # fmt: skip
            return VmOutcome(outcome="failed", code=exc.code, message=exc.message)

    @contextlib.asynccontextmanager
    async def _leases(self, task: RunVmTask, job: JobInfo) -> AsyncIterator[list[b.LeaseInfo]]:
        opts, vm = job.spec.options, task.vm
        wanted = [
            (f"run:{task.run_id}", opts.parallel_vms),
            (f"hypervisor:{vm.platform_id}/{vm.physical_host_id}", opts.vms_per_physical_host),
        ]
        async with held_leases(self.ctx, wanted, lease_holder(task.run_id, vm.vm_id)) as taken:
            yield taken

    async def _renew(self, task: RunVmTask, leases: list[b.LeaseInfo]) -> None:
        async def renew_claim() -> str | None:
            claim_s = self.ctx.settings.claim_s
            reply = await self.ctx.catalog.vm_renew(
                task.run_id, task.vm.vm_id, task.attempt, claim_s
            )
            return reply.run_state

        await keep_claim(
            self.ctx, renew_claim, leases, f"run {task.run_id}", stops=BACKUP_CLAIM_STOPS
        )

    async def _finish(self, task: RunVmTask, job: JobInfo, done: VmOutcome) -> bool:
        """Record the outcome (and the next attempt); True when this finish ended the run."""
        if done.code == LeaseLostError.code:  # a disk commit found the VM another's
            raise LeaseLostError(done.message)
        opts = job.spec.options
        retry = (
            done.outcome == "failed"
            and done.code != RunCancelledError.code
            and task.attempt <= opts.vm_retries
        )
        # published before the finish: the finish of the last VM makes the catalog
        # announce RunFinished, which must not reach consumers ahead of this; and a
        # worker that dies in between repeats both (same message id), losing neither
        if done.outcome in ("succeeded", "failed"):
            await self.ctx.publish(
                VmFinished(
                    run_id=task.run_id, job_id=task.job_id, vm=task.vm, attempt=task.attempt,
                    outcome="succeeded" if done.outcome == "succeeded" else "failed",
                    code=done.code, message=done.message, backup_set_id=done.backup_set_id,
                    stats=done.stats, will_retry=retry, at=now(), warnings=done.warnings,
                )
            )  # fmt: skip
        # the outcome must land, or the run never ends: tried until the catalog answers
        # (a repeat after a lost reply is answered as done; fenced by this worker's claim)
        catalog = self.ctx.catalog
        recording = catalog.reconnecting(catalog_policy(math.inf), catalog.on_retry)
        reply = await recording.vm_finish(
            b.VmFinish(
                actor=catalog.actor, run_id=task.run_id, vm_id=task.vm.vm_id,
                attempt=task.attempt, outcome=done.outcome, code=done.code,
                message=done.message, failed_disks=done.failed_disks, will_retry=retry,
                worker_id=self.ctx.worker_id,
            )
        )  # fmt: skip
        if retry:
            await self._retry(task, opts.vm_retry_interval_s)
        return reply.applied and reply.run_state in _TERMINAL_RUN

    async def _retry(self, task: RunVmTask, interval_s: int) -> None:
        again = RunVmTask(
            run_id=task.run_id, job_id=task.job_id, job_revision=task.job_revision,
            host_id=task.host_id, vm=task.vm, backup_type=task.backup_type,
            attempt=task.attempt + 1, not_before=now() + timedelta(seconds=interval_s),
        )  # fmt: skip
        await self.ctx.bus.publish(
            "commands",
            run_routing_key(BackupHostId(task.host_id)),
            again,
            message_id=task_message_id(task.run_id, task.vm.vm_id, again.attempt),
        )

    async def _run_ended(self, task: RunVmTask, job: JobInfo) -> None:
        # the catalog moved the run to its end and announces RunFinished itself
        detail = await self.ctx.catalog.run_detail(task.run_id)
        outcome = detail.run.state
        log.info("run.finished", run_id=task.run_id, outcome=outcome, worker=self.ctx.worker_id)
        script = job.spec.options.post_script
        if script is not None:
            env = {"run_id": task.run_id, "job_id": task.job_id, "phase": "post"}
            await run_job_script(script, {**env, "outcome": outcome})


def _cancelled(task: RunVmTask, when: str) -> VmOutcome:
    message = f"run {task.run_id} was cancelled {when}"
    return VmOutcome(outcome="failed", code=RunCancelledError.code, message=message)


@contextlib.asynccontextmanager
async def held_leases(
    ctx: RunContext, wanted: list[tuple[str, int]], holder: str
) -> AsyncIterator[list[b.LeaseInfo]]:
    """The leases ``wanted`` ((scope, limit) pairs), held by ``holder`` (the task, so a
    redelivered task gets its slots back) until the block ends; no slot free:
    ``DeferredError`` (the message is parked and tried again, not a failure)."""
    ttl = ctx.settings.claim_s
    taken: list[b.LeaseInfo] = []
    try:
        for scope, limit in wanted:
            with deferred_while_lost():
                lease = await ctx.catalog.lease(scope, holder, limit, ttl)
            if lease is None:
                raise DeferredError(f"no free slot in {scope}", delay_s=1.0, scope=scope)
            taken.append(lease)
        yield taken
    except (LeaseLostError, ClaimedElsewhereError):
        taken.clear()  # the task's slots (held by the task, not by us) are its worker's
        raise
    finally:
        await asyncio.gather(*(_release(ctx, lease) for lease in taken))


async def _release(ctx: RunContext, lease: b.LeaseInfo) -> None:
    """One lease given back; a failed release only holds its slot until the lease expires."""
    with contextlib.suppress(EdgebackError):
        await ctx.catalog.lease_release(lease)


async def keep_claim(
    ctx: RunContext,
    renew_claim: Callable[[], Awaitable[str | None]],
    leases: list[b.LeaseInfo],
    what: str,
    *,
    stops: tuple[type[EdgebackError], ...] = (),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Renew a task's claim (``renew_claim`` answers the run's or restore's state) and
    its leases every ``claim_s / 3`` until cancelled; ``RunCancelledError`` once the
    state is ``cancelling``. A failed renewal is tried again at the next tick (the
    claim outlives it), except an error of ``stops``: it ends the renewals, which stops
    the task's work. A backup's VM task stops on a claim another worker took over
    (``lease_lost``) and on a catalog lost for the whole reconnect time
    (``catalog_unreachable``); a restore's only on the first (its writes need no
    catalog, and nobody can take the VM over while the catalog is away). A lost lease
    only costs its limit: logged."""
    claim_s = ctx.settings.claim_s
    while True:
        await sleep(claim_s / 3)
        try:
            state = await renew_claim()
        except EdgebackError as exc:
            if isinstance(exc, stops):
                raise
            log.warning("task.renew_failed", task=what, code=exc.code)
            continue
        for lease in leases:
            try:
                await ctx.catalog.lease_renew(lease, claim_s)
            except EdgebackError as exc:
                log.warning("lease.renew_failed", task=what, scope=lease.scope, code=exc.code)
        if state == "cancelling":
            raise RunCancelledError(f"{what} was cancelled")


@contextlib.contextmanager
def deferred_while_lost() -> Iterator[None]:
    """A catalog lost for the whole reconnect time before the VM started: the task is
    parked and tried again (``DeferredError``, not counted as a failure), nothing begun."""
    try:
        yield
    except CatalogUnreachableError as exc:
        raise DeferredError(f"{exc.message}; the task waits", delay_s=5.0) from exc


@dataclass(slots=True)
class LostCalls:
    """Counts a VM task's catalog calls tried again after a lost connection (``OnRetry``),
    and says so in the VM's warnings."""

    count: int = 0

    def __call__(self, attempts: int, delay: float, exc: EdgebackError) -> None:
        if lost_connection(exc):
            self.count += 1

    def noted(self, outcome: VmOutcome) -> VmOutcome:
        if not self.count:
            return outcome
        warning = (
            f"the catalog did not answer for a while: {self.count} call(s) tried again "
            "within the reconnect time"
        )
        return replace(outcome, warnings=[*outcome.warnings, warning])
