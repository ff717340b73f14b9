"""The VMs of a restore in the catalog (``catalog.restore.vm.*``), over both buses with
the catalog DB behind and the test's clock: planned once, claimed by one worker, taken
over once the claim expired (its worker died), finished with per-disk figures, and the
restore ended from its VMs; only the restore's backup host may call them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from tests.integration.conftest import BusOpener
from tests.integration.test_catalog_restores import (
    T0,
    RestoreWorld,
    setup,
    spec,
    world,
)
from tests.integration.test_catalog_rpc import ADMIN

from edgeback_catalog.gate import DENIED
from edgeback_catalog.mongo import Coll
from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import RESTORE_FINISHED, RESTORE_STARTED, worker_runs
from edgeback_core.errors import PermissionDeniedError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import restores as r

pytestmark = pytest.mark.integration
SELF = m.ActorRef()
__all__ = ["world"]


async def _running_restore(world: RestoreWorld, set_ids: list[str]) -> str:
    """A verified restore moved to running as its worker would (its PlanRestore taken)."""

    async def take(_msg: r.PlanRestore | r.RestoreVmTask, _env: Envelope) -> None:
        pass

    await world.bus.consume(worker_runs(BackupHostId("h1")), take, r.RestoreCommand)  # type: ignore[arg-type]
    create = r.RestoreCreate(actor=ADMIN, spec=spec(set_ids))
    created = await world.call(r.RESTORE_CREATE, create, r.RestoreCreated)
    start = r.RestoreStart(
        actor=ADMIN, restore_id=created.restore.id, verification_code=created.verification_code
    )
    assert (await world.call(r.RESTORE_START, start, r.RestoreInfo)).state == "queued"
    move = r.RestoreTransition(actor=SELF, restore_id=created.restore.id, target="running")
    assert (await world.call(r.RESTORE_TRANSITION, move, r.RestoreInfo)).state == "running"
    return created.restore.id


def _claim(kind: type[r.RestoreVmClaim], rid: str, set_id: str, worker: str) -> r.RestoreVmClaim:
    return kind(actor=SELF, restore_id=rid, backup_set_id=set_id, worker_id=worker, claim_s=30)


# the catalog's own rules: one bus suffices (the broker's identities are the last test's)
@pytest.mark.parametrize("open_bus", ["memory"], indirect=True)
async def test_vm_tasks_claim_take_over_finish_and_end_the_restore(world: RestoreWorld) -> None:
    ids = await setup(world)
    rid = await _running_restore(world, [ids["a_new"]])
    plan = r.RestoreVmPlan(actor=SELF, restore_id=rid)
    first = (await world.call(r.RESTORE_VM_PLAN, plan, r.RestoreVmPlanReply)).vms
    assert (await world.call(r.RESTORE_VM_PLAN, plan, r.RestoreVmPlanReply)).vms == first
    assert [(t.backup_set_id, t.target_vm.vm_id, t.state) for t in first] == [
        (ids["a_new"], "vm-a", "pending")
    ]
    set_id = ids["a_new"]
    one = await world.call(
        r.RESTORE_VM_START, _claim(r.RestoreVmStart, rid, set_id, "w1"), r.RestoreVmReply
    )
    assert (one.applied, one.task.state, one.task.worker_id) == (True, "running", "w1")
    held = await world.call(
        r.RESTORE_VM_START, _claim(r.RestoreVmStart, rid, set_id, "w2"), r.RestoreVmReply
    )
    assert (held.applied, held.task.worker_id, held.restore_state) == (False, "w1", "running")
    world.clock.now = T0 + timedelta(seconds=31)  # w1 stopped renewing: it died
    taken = await world.call(
        r.RESTORE_VM_START, _claim(r.RestoreVmStart, rid, set_id, "w2"), r.RestoreVmReply
    )
    assert (taken.applied, taken.task.worker_id) == (True, "w2")
    renew_w1 = _claim(r.RestoreVmRenew, rid, set_id, "w1")
    assert await world.code_of(r.RESTORE_VM_RENEW, renew_w1) == "lease_lost"
    renewed = await world.call(
        r.RESTORE_VM_RENEW, _claim(r.RestoreVmRenew, rid, set_id, "w2"), r.RestoreVmReply
    )
    assert renewed.task.worker_id == "w2"

    stats = [
        r.RestoreDiskStats(disk_id=d, bytes_written=4 << 20, bytes_zeroed=8 << 20, duration_s=1.5)
        for d in ("d0", "d1")
    ]
    stale = r.RestoreVmFinish(
        actor=SELF, restore_id=rid, backup_set_id=set_id, outcome="failed",
        code="digest_mismatch", worker_id="w1",
    )  # fmt: skip
    assert await world.code_of(r.RESTORE_VM_FINISH, stale) == "lease_lost"  # w2's VM now
    finish = r.RestoreVmFinish(
        actor=SELF, restore_id=rid, backup_set_id=set_id, outcome="succeeded", stats=stats,
        vm_started=True, worker_id="w2",
    )  # fmt: skip
    done = await world.call(r.RESTORE_VM_FINISH, finish, r.RestoreVmReply)
    assert (done.applied, done.restore_state, done.task.state) == (True, "succeeded", "succeeded")
    again = await world.call(r.RESTORE_VM_FINISH, finish, r.RestoreVmReply)
    assert (again.applied, again.restore_state) == (False, "succeeded")
    other = r.RestoreVmFinish(
        actor=SELF, restore_id=rid, backup_set_id=set_id, outcome="failed", code="digest_mismatch"
    )
    assert await world.code_of(r.RESTORE_VM_FINISH, other) == "conflict"
    got = await world.call(r.RESTORE_GET, r.RestoreGet(actor=ADMIN, restore_id=rid), r.RestoreInfo)
    assert got.state == "succeeded"
    assert [(v.state, v.vm_started, v.stats) for v in got.vms] == [("succeeded", True, stats)]


@pytest.mark.parametrize("open_bus", ["memory"], indirect=True)
async def test_refused_and_cancelled_vms_end_the_restore(world: RestoreWorld) -> None:
    ids = await setup(world)
    rid = await _running_restore(world, [ids["a_new"]])
    set_id = ids["a_new"]
    await world.call(
        r.RESTORE_VM_START, _claim(r.RestoreVmStart, rid, set_id, "w1"), r.RestoreVmReply
    )
    bad = r.RestoreVmFinish(
        actor=SELF, restore_id=rid, backup_set_id=set_id, outcome="refused", code="vm_shelved"
    )
    assert await world.code_of(r.RESTORE_VM_FINISH, bad) == "invalid_input"  # a backup code
    cancel = r.RestoreCancel(actor=ADMIN, restore_id=rid)
    assert (await world.call(r.RESTORE_CANCEL, cancel, r.RestoreInfo)).state == "cancelling"
    renewed = await world.call(
        r.RESTORE_VM_RENEW, _claim(r.RestoreVmRenew, rid, set_id, "w1"), r.RestoreVmReply
    )
    assert renewed.restore_state == "cancelling"  # the worker stops at its next renewal
    refusal = r.RestoreRefusal(code=r.REFUSE_TARGET_PAUSED, reason="paused")
    refused = r.RestoreVmFinish(
        actor=SELF, restore_id=rid, backup_set_id=set_id, outcome="refused",
        code=r.REFUSE_TARGET_PAUSED, refusals=[refusal],
    )  # fmt: skip
    done = await world.call(r.RESTORE_VM_FINISH, refused, r.RestoreVmReply)
    assert done.restore_state == "cancelled"
    assert done.task.refusals == [refusal]


async def test_only_the_restores_backup_host_runs_it(
    world: RestoreWorld, open_bus: BusOpener
) -> None:
    ids = await setup(world)
    rid = await _running_restore(world, [ids["a_new"]])
    async with open_bus("host-h1") as own, open_bus("host-h2") as stranger:
        plan = r.RestoreVmPlan(actor=SELF, restore_id=rid)
        mine = await own.call(r.RESTORE_VM_PLAN, plan, r.RestoreVmPlanReply, timeout=10)
        assert len(mine.vms) == 1
        got = r.RestoreGet(actor=SELF, restore_id=rid)
        assert (await own.call(r.RESTORE_GET, got, r.RestoreInfo, timeout=10)).id == rid
        for name, req in (
            (r.RESTORE_VM_PLAN, plan),
            (r.RESTORE_GET, got),
            (r.RESTORE_VM_START, _claim(r.RestoreVmStart, rid, ids["a_new"], "w9")),
        ):
            with pytest.raises(PermissionDeniedError):
                await stranger.call(name, req, m.Done, timeout=10)
        # events: kept from the restore's host only, and RestoreFinished from nobody but
        # the catalog
        started = r.RestoreStarted(
            restore_id=rid, host_id="h1", vm_count=1, requested_by="t", at=T0
        )
        ended = r.RestoreFinished(restore_id=rid, outcome="succeeded", at=T0)
        await stranger.publish("events", RESTORE_STARTED, started, message_id="forged-start")
        await own.publish("events", RESTORE_FINISHED, ended, message_id="forged-end")
        await own.publish("events", RESTORE_STARTED, started, message_id="own-start")

        async def settled() -> bool:
            denied = await world.db.count(Coll.AUDIT_LOG, {"action": DENIED})
            kept = await world.db.find_one(Coll.RUN_LOG, {"_id": "own-start"})
            return denied >= 5 and kept is not None

        async with asyncio.timeout(10):
            while not await settled():  # noqa: ASYNC110 - an event's effect shows only in the DB
                await asyncio.sleep(0.05)
    page = r.RestoreEventsGet(actor=ADMIN, restore_id=rid)
    log = await world.call(r.RESTORE_EVENTS, page, r.RestoreEventsReply)
    assert [(e.message_id, type(e.event).__name__) for e in log.events] == [
        ("own-start", "RestoreStarted")
    ]
