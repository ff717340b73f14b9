"""Runs of jobs through the catalog's RPCs over both buses, as a worker drives them:
start once per idempotency key, plan VMs, start/finish attempts idempotently, commit
disk versions, end the run from its VMs, find the bases of the next backups, and
take leases; concurrent repeats of one step apply it once."""

# ruff: noqa: F811 (``world`` is the fixture imported from test_catalog_rpc)
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from tests.integration.test_catalog_jobs import setup, spec
from tests.integration.test_catalog_rpc import ADMIN, SERVICE, World, world  # noqa: F401

from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages import jobs as j
from edgeback_core.messages import runs as r

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
POOL = j.PoolRef(node_url="http://node:8080", name="p1")


def vm(n: int) -> r.VmRef:
    return r.VmRef(platform_id="p", vm_id=f"vm-{n}", name=f"web-{n}", physical_host_id="hv1")


async def job_with_run(world: World, key: str = "k1") -> tuple[str, b.RunStartReply]:
    host, platform = await setup(world)
    job = await world.call(
        j.JOB_CREATE,
        j.JobCreate(actor=ADMIN, spec=spec(host, platform, vm_retries=1)),
        j.JobInfo,
    )
    started = await start(world, job.id, key)
    await to_running(world, started.run.id)
    return job.id, started


async def to_running(world: World, run_id: str) -> None:
    targets: tuple[m.RunStateName, ...] = ("queued", "running")
    for n, target in enumerate(targets):
        step = m.RunTransition(actor=SERVICE, run_id=run_id, target=target, request_id=f"t{n}")
        await world.call(catalog_rpc.RUN_TRANSITION, step, m.RunTransitionReply)


async def start(world: World, job_id: str, key: str, **kw: object) -> b.RunStartReply:
    req = b.RunStart(actor=ADMIN, job_id=job_id, requested_by="alice", idempotency_key=key, **kw)  # type: ignore[arg-type]
    return await world.call(b.RUN_START, req, b.RunStartReply)


async def vm_start(world: World, run_id: str, n: int, attempt: int = 1) -> b.VmTaskReply:
    req = b.VmStart(actor=SERVICE, run_id=run_id, vm=vm(n), attempt=attempt, worker_id="w1")
    return await world.call(b.VM_START, req, b.VmTaskReply)


def finish(run_id: str, n: int, outcome: str, code: str = "", attempt: int = 1) -> b.VmFinish:
    return msgspec.convert(
        {"actor": SERVICE, "run_id": run_id, "vm_id": f"vm-{n}", "attempt": attempt,
         "outcome": outcome, "code": code},
        b.VmFinish,
    )  # fmt: skip


def commit(run_id: str, n: int, disk: str, version: str = "v1", **kw: object) -> b.DiskCommit:
    fields: dict[str, object] = {
        "actor": SERVICE, "run_id": run_id, "vm_id": f"vm-{n}", "disk_id": disk,
        "backup_type": "full", "taken_at": T0, "manifest_name": f"vm-{n}/{disk}",
        "manifest_version": version, "size_bytes": 10 << 20,
        "stats": r.DiskStats(bytes_read=8, bytes_new=5, bytes_deduplicated=3, duration_s=1.5),
        "snapshot_name": f"snap-{run_id[:6]}", "snapshot_kept": True,
    }  # fmt: skip
    return msgspec.convert(fields | kw, b.DiskCommit)


async def test_a_run_from_start_to_its_outcome(world: World) -> None:
    job_id, started = await job_with_run(world)
    run_id = started.run.id
    assert started.applied and (started.backup_type, started.pool) == ("incremental", POOL)
    again = await start(world, job_id, "k1")
    assert not again.applied and again.run.id == run_id
    assert (
        await world.code_of(
            b.RUN_START,
            b.RunStart(actor=ADMIN, job_id=job_id, requested_by="bob", idempotency_key="k2"),
        )
        == "job_busy"
    )
    busy = j.JobDelete(actor=ADMIN, job_id=job_id)
    assert await world.code_of(j.JOB_DELETE, busy) == "job_busy"
    plan = b.VmPlan(actor=SERVICE, run_id=run_id, vms=[vm(1), vm(2), vm(3)])
    planned = await world.call(b.VM_PLAN, plan, b.VmPlanReply)
    assert [t.state for t in planned.vms] == ["pending"] * 3
    # VM 1: two disks, succeeded; repeats are answered, different results refused
    assert (await vm_start(world, run_id, 1)).applied
    assert not (await vm_start(world, run_id, 1)).applied
    for disk in ("d1", "d2"):
        assert (await world.call(b.DISK_COMMIT, commit(run_id, 1, disk), b.DiskCommitReply)).applied
    repeat = await world.call(b.DISK_COMMIT, commit(run_id, 1, "d1"), b.DiskCommitReply)
    assert not repeat.applied and repeat.disk_version.manifest_version == "v1"
    assert await world.code_of(b.DISK_COMMIT, commit(run_id, 1, "d1", "v2")) == "conflict"
    done = await world.call(b.VM_FINISH, finish(run_id, 1, "succeeded"), b.VmTaskReply)
    assert done.applied and done.task.state == "succeeded" and done.task.backup_set_id
    assert not (
        await world.call(b.VM_FINISH, finish(run_id, 1, "succeeded"), b.VmTaskReply)
    ).applied
    assert await world.code_of(b.VM_FINISH, finish(run_id, 1, "failed", "x")) == "conflict"
    assert await world.code_of(b.DISK_COMMIT, commit(run_id, 1, "d3")) == "invalid_transition"
    # VM 2: fails, is retried once (vm_retries=1), fails again, no third attempt
    await vm_start(world, run_id, 2)
    first_try = msgspec.structs.replace(
        finish(run_id, 2, "failed", "rbd_io_error"), will_retry=True
    )
    retrying = await world.call(b.VM_FINISH, first_try, b.VmTaskReply)
    assert retrying.task.retrying and retrying.run_state == "running"
    assert (await vm_start(world, run_id, 2, attempt=2)).applied
    second = finish(run_id, 2, "failed", "timeout", attempt=2)
    assert (await world.call(b.VM_FINISH, second, b.VmTaskReply)).task.attempt == 2
    assert (
        await world.code_of(
            b.VM_START, b.VmStart(actor=SERVICE, run_id=run_id, vm=vm(2), attempt=3, worker_id="w")
        )
        == "invalid_transition"
    )
    old = await world.call(b.VM_FINISH, first_try, b.VmTaskReply)
    assert not old.applied  # attempt 1's result, redelivered late
    # VM 3: skipped before its snapshot, with a stable reason
    assert (
        await world.code_of(b.VM_FINISH, finish(run_id, 3, "skipped", "because")) == "invalid_input"
    )
    skip = finish(run_id, 3, "skipped", r.SKIP_LOW_FREE_SPACE)
    last = await world.call(b.VM_FINISH, skip, b.VmTaskReply)
    assert last.run_state == "partially_succeeded"  # the last VM ended the run
    end = b.RunFinish(actor=SERVICE, run_id=run_id, request_id="end")
    assert await world.code_of(b.RUN_FINISH, end) == "invalid_transition"
    detail = await world.call(b.RUN_DETAIL, b.RunDetailGet(actor=ADMIN, run_id=run_id), b.RunDetail)
    assert [(t.vm.vm_id, t.state, t.code) for t in detail.vms] == [
        ("vm-1", "succeeded", ""), ("vm-2", "failed", "timeout"),
        ("vm-3", "skipped", r.SKIP_LOW_FREE_SPACE),
    ]  # fmt: skip
    assert detail.backup_set_ids == [done.task.backup_set_id]
    assert (detail.stats.bytes_read, detail.stats.bytes_new, detail.stats.duration_s) == (
        16,
        10,
        3.0,
    )
    off = j.JobSetEnabled(actor=ADMIN, job_id=job_id, enabled=False)
    await world.call(j.JOB_SET_ENABLED, off, j.JobInfo)
    later = b.RunStart(actor=ADMIN, job_id=job_id, requested_by="bob", idempotency_key="k9")
    assert await world.code_of(b.RUN_START, later) == "job_disabled"
    assert (await world.call(j.JOB_DELETE, busy, m.Done)).ok  # the run ended: deletable


async def test_bases_of_incremental_and_cumulative_backups(world: World) -> None:
    job_id, first = await job_with_run(world)
    sets = []
    for run_no, kind in enumerate(("full", "incremental", "cumulative")):
        started = first if run_no == 0 else await start(world, job_id, f"k{run_no + 1}")
        if run_no:
            await to_running(world, started.run.id)
        run_id = started.run.id
        await vm_start(world, run_id, 1)
        taken = T0 + timedelta(hours=run_no)
        await world.call(
            b.DISK_COMMIT,
            commit(run_id, 1, "d1", backup_type=kind, taken_at=taken),
            b.DiskCommitReply,
        )
        if run_no < 2:
            done = await world.call(b.VM_FINISH, finish(run_id, 1, "succeeded"), b.VmTaskReply)
            sets.append(done.task.backup_set_id)
            assert done.run_state == "succeeded"
    # the cumulative one never completed (its VM is still running): not a base
    base = b.BackupSetBaseGet(
        actor=SERVICE, vm_id="vm-1", job_id=job_id, pool=POOL, for_type="incremental"
    )
    inc = await world.call(b.BACKUP_SET_BASE, base, b.BackupSetWithDisks)
    assert inc.backup_set is not None and inc.backup_set.id == sets[1]
    assert inc.backup_set.backup_type == "incremental" and inc.backup_set.complete
    assert [(d.disk_id, d.snapshot_kept) for d in inc.disks] == [("d1", True)]
    cum = await world.call(
        b.BACKUP_SET_BASE,
        msgspec.structs.replace(base, for_type="cumulative"),
        b.BackupSetWithDisks,
    )
    assert cum.backup_set is not None and cum.backup_set.id == sets[0]
    other_pool = msgspec.structs.replace(
        base, pool=j.PoolRef(node_url="http://node:8080", name="p2")
    )
    assert (
        await world.call(b.BACKUP_SET_BASE, other_pool, b.BackupSetWithDisks)
    ).backup_set is None
    listed = await world.call(
        b.BACKUP_SET_LIST, b.BackupSetList(actor=ADMIN, vm_id="vm-1"), b.BackupSetListReply
    )
    assert [s.backup_type for s in listed.backup_sets] == ["cumulative", "incremental", "full"]


async def test_concurrent_repeats_of_one_step_apply_it_once(world: World) -> None:
    _job_id, started = await job_with_run(world)
    run_id = started.run.id
    starts = await asyncio.gather(*(vm_start(world, run_id, 1) for _ in range(10)))
    assert sum(s.applied for s in starts) == 1
    outcomes = [finish(run_id, 1, "succeeded")] * 5 + [finish(run_id, 1, "failed", "x")] * 5
    results = await asyncio.gather(
        *(world.call(b.VM_FINISH, f, b.VmTaskReply) for f in outcomes), return_exceptions=True
    )
    applied = [x for x in results if isinstance(x, b.VmTaskReply) and x.applied]
    assert len(applied) == 1
    winner = applied[0].task.state
    for req, res in zip(outcomes, results, strict=True):
        if req.outcome == winner:
            assert isinstance(res, b.VmTaskReply)
        else:
            assert getattr(res, "code", None) == "conflict"


async def test_leases_over_the_bus(world: World) -> None:
    acquire = b.LeaseAcquire(actor=SERVICE, scope="run:r1", holder="w1/vm-1", limit=1, ttl_s=30)
    got = await world.call(b.LEASE_ACQUIRE, acquire, b.LeaseReply)
    assert got.lease is not None and got.lease.slot == 0
    other = msgspec.structs.replace(acquire, holder="w2/vm-2")
    assert (await world.call(b.LEASE_ACQUIRE, other, b.LeaseReply)).lease is None
    renew = b.LeaseRenew(actor=SERVICE, scope="run:r1", slot=0, holder="w2/vm-2")
    assert await world.code_of(b.LEASE_RENEW, renew) == "lease_lost"
    release = b.LeaseRelease(actor=SERVICE, scope="run:r1", slot=0, holder="w1/vm-1")
    assert (await world.call(b.LEASE_RELEASE, release, m.Done)).ok
    assert not (await world.call(b.LEASE_RELEASE, release, m.Done)).ok
    assert (await world.call(b.LEASE_ACQUIRE, other, b.LeaseReply)).lease is not None
    as_user = msgspec.structs.replace(acquire, actor=m.ActorRef(user="root"))
    assert await world.code_of(b.LEASE_ACQUIRE, as_user) == "permission_denied"


async def test_a_running_attempt_belongs_to_one_worker_until_its_claim_runs_out(
    world: World,
) -> None:
    _job_id, started = await job_with_run(world)
    run_id = started.run.id

    def claim(worker: str, claim_s: float = 0.8) -> b.VmStart:
        return b.VmStart(actor=SERVICE, run_id=run_id, vm=vm(1), worker_id=worker, claim_s=claim_s)

    replies = await asyncio.gather(
        *(world.call(b.VM_START, claim(f"w{n}"), b.VmTaskReply) for n in range(8))
    )
    assert sum(x.applied for x in replies) == 1
    (holder,) = {x.task.worker_id for x in replies}
    other = "w9"
    held = await world.call(b.VM_START, claim(other), b.VmTaskReply)
    assert not held.applied and held.task.worker_id == holder  # defer: it is taken
    own = await world.call(b.VM_START, claim(holder), b.VmTaskReply)
    assert not own.applied and own.task.worker_id == holder  # its own, again
    renew = b.VmRenew(actor=SERVICE, run_id=run_id, vm_id="vm-1", worker_id=other)
    assert await world.code_of(b.VM_RENEW, renew) == "lease_lost"
    await asyncio.sleep(1.0)  # the holder died: its claim runs out
    taken = await world.call(b.VM_START, claim(other), b.VmTaskReply)
    assert taken.applied and taken.task.worker_id == other and taken.task.state == "running"
    stale = msgspec.structs.replace(renew, worker_id=holder)
    assert await world.code_of(b.VM_RENEW, stale) == "lease_lost"
    assert (await world.call(b.VM_RENEW, renew, b.VmTaskReply)).task.worker_id == other


async def test_a_claim_fences_the_commits_and_the_finish_of_a_worker_that_lost_it(
    world: World,
) -> None:
    """A worker cut off from the catalog for longer than its claim (an outage it rides
    out) keeps its VM if nobody took it meanwhile; once another worker has, the first
    one's commits and finish are refused, and repeats after a lost reply are answered."""
    _job_id, started = await job_with_run(world)
    run_id = started.run.id

    def claim(worker: str) -> b.VmStart:
        return b.VmStart(actor=SERVICE, run_id=run_id, vm=vm(1), worker_id=worker, claim_s=0.8)

    def renew(worker: str) -> b.VmRenew:
        return b.VmRenew(actor=SERVICE, run_id=run_id, vm_id="vm-1", worker_id=worker, claim_s=0.8)

    assert (await world.call(b.VM_START, claim("w1"), b.VmTaskReply)).applied
    await asyncio.sleep(1.0)  # w1 could not renew: its claim lapsed, nobody took it
    assert (await world.call(b.VM_RENEW, renew("w1"), b.VmTaskReply)).task.worker_id == "w1"
    await asyncio.sleep(1.0)  # lapsed again, and this time w2 takes the VM over
    taken = await world.call(b.VM_START, claim("w2"), b.VmTaskReply)
    assert taken.applied and taken.task.worker_id == "w2"
    assert await world.code_of(b.VM_RENEW, renew("w1")) == "lease_lost"
    assert await world.code_of(b.DISK_COMMIT, commit(run_id, 1, "d1", worker_id="w1")) == (
        "lease_lost"
    )
    assert (
        await world.call(b.DISK_COMMIT, commit(run_id, 1, "d1", worker_id="w2"), b.DiskCommitReply)
    ).applied
    # the stored commit repeated (a reply lost on its way) is answered whoever asks
    again = commit(run_id, 1, "d1", worker_id="w1")
    assert not (await world.call(b.DISK_COMMIT, again, b.DiskCommitReply)).applied
    stale = msgspec.structs.replace(
        finish(run_id, 1, "failed", "catalog_unreachable"), worker_id="w1"
    )
    assert await world.code_of(b.VM_FINISH, stale) == "lease_lost"
    done = msgspec.structs.replace(finish(run_id, 1, "succeeded"), worker_id="w2")
    assert (await world.call(b.VM_FINISH, done, b.VmTaskReply)).applied
    repeat = await world.call(b.VM_FINISH, done, b.VmTaskReply)  # its reply was lost
    assert not repeat.applied and repeat.task.state == "succeeded"
    assert await world.code_of(b.VM_FINISH, stale) == "conflict"  # ended otherwise
    detail = await world.call(b.RUN_DETAIL, b.RunDetailGet(actor=ADMIN, run_id=run_id), b.RunDetail)
    assert detail.stats.bytes_read == 8  # the one disk, counted once
    (only,) = detail.backup_set_ids
    got = await world.call(
        b.BACKUP_SET_GET, b.BackupSetGet(actor=ADMIN, backup_set_id=only), b.BackupSetWithDisks
    )
    assert got.backup_set is not None and got.backup_set.complete and len(got.disks) == 1
