"""Restores of schedule ``once`` and ``manual`` leave ``scheduled``: the scheduler's tick
asks the catalog to queue the once restores that are due (one injected clock for the
catalog and the scheduler), the catalog queues each with a conditional update fenced
by the scheduler's token and sends its ``PlanRestore``; a manual one is run by hand.
Real catalog DB, over both buses (RabbitMQ and in-memory)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from tests.integration.conftest import BusOpener
from tests.integration.test_catalog_restores import T0, RestoreWorld, setup, spec, world
from tests.integration.test_catalog_rpc import ADMIN, register

from edgeback_catalog.mongo import Coll
from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import worker_runs
from edgeback_core.errors import EdgebackError, LeaseLostError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages import restores as r
from edgeback_core.messages import scheduling as s
from edgeback_scheduler.catalog import CatalogClient
from edgeback_scheduler.firing import Firing
from edgeback_scheduler.leader import LeaderLease
from edgeback_scheduler.scheduler import Scheduler

pytestmark = pytest.mark.integration
__all__ = ["world"]

AT = T0 + timedelta(hours=1)


class Rig(RestoreWorld):
    plans: asyncio.Queue[r.PlanRestore]

    def monotonic(self) -> float:
        return (self.clock.now - T0).total_seconds()

    def scheduler(self, name: str, *, ttl_s: float = 30.0, late_limit_s: float = 3600) -> Scheduler:
        client = CatalogClient(self.bus, name, timeout_s=5)
        firing = Firing(
            self.bus,
            client,
            self.clock,
            page_size=2,
            late_after_s=60,
            restore_late_limit_s=late_limit_s,
        )
        lease = LeaderLease(client, ttl_s=ttl_s, monotonic=self.monotonic)
        return Scheduler(lease, firing, tick_s=1)

    async def plan(self) -> r.PlanRestore:
        async with asyncio.timeout(10):
            return await self.plans.get()

    async def state(self, restore_id: str) -> str:
        got = await self.call(
            r.RESTORE_GET, r.RestoreGet(actor=ADMIN, restore_id=restore_id), r.RestoreInfo
        )
        return got.state


@pytest.fixture
async def rig(world: RestoreWorld) -> Rig:
    """The catalog of ``test_catalog_restores`` (its clock the test's), and a consumer of
    the backup host's run queue collecting the plans sent to it."""
    rig = Rig(world.bus, world.db)
    rig.clock, rig.plans = world.clock, asyncio.Queue()

    async def take(msg: r.PlanRestore, _env: Envelope) -> None:
        await rig.plans.put(msg)

    await rig.bus.consume(worker_runs(BackupHostId("h1")), take, r.PlanRestore)
    return rig


async def verified(rig: Rig, point: str, schedule: dict[str, str]) -> r.RestoreInfo:
    """A restore created and started with its code: held ``scheduled``."""
    create = r.RestoreCreate(actor=ADMIN, spec=spec([point], schedule=schedule))
    created = await rig.call(r.RESTORE_CREATE, create, r.RestoreCreated)
    start = r.RestoreStart(
        actor=ADMIN, restore_id=created.restore.id, verification_code=created.verification_code
    )
    started = await rig.call(r.RESTORE_START, start, r.RestoreInfo)
    assert started.state == "scheduled"
    return started


def once(at: datetime) -> dict[str, str]:
    return {"kind": "once", "at": at.isoformat(), "tz": "UTC"}


async def test_a_once_restore_is_queued_when_due_and_not_before(rig: Rig) -> None:
    ids = await setup(rig)
    held = await verified(rig, ids["a_new"], once(AT))
    assert held.due_at == AT
    a = rig.scheduler("a")
    rig.clock.now = AT - timedelta(seconds=1)
    report = await a.step()
    assert report is not None and report.restores == []
    assert await rig.state(held.id) == "scheduled" and rig.plans.empty()
    rig.clock.now = AT
    report = await a.step()
    assert report is not None
    assert [(x.restore_id, x.outcome, x.late_by_s) for x in report.restores] == [
        (held.id, "queued", 0.0)
    ]
    assert await rig.plan() == r.PlanRestore(restore_id=held.id, host_id="h1")
    assert await rig.state(held.id) == "queued"
    rig.clock.now += timedelta(seconds=5)
    again = await a.step()
    assert again is not None and again.restores == []  # queued once
    audit = await rig.db.find(Coll.AUDIT_LOG, {"resource": f"restore/{held.id}"})
    assert [d["action"] for d in audit][-1] == "restore.queued"
    assert rig.plans.empty()


async def test_a_retry_race_queues_once(rig: Rig) -> None:
    ids = await setup(rig)
    held = await verified(rig, ids["a_new"], once(AT))
    token = await rig.scheduler("a").lease.hold()
    assert token == 1
    rig.clock.now = AT + timedelta(seconds=2)
    ask = s.QueueDueRestores(actor=m.ActorRef(), holder="a", token=token, before=rig.clock.now)
    replies = await asyncio.gather(
        *(rig.call(s.SCHEDULE_QUEUE_RESTORES, ask, s.QueueDueRestoresReply) for _ in range(3))
    )
    outcomes = [x.outcome for reply in replies for x in reply.restores]
    assert outcomes.count("queued") == 1 and set(outcomes) <= {"queued", "taken"}
    assert await rig.plan() == r.PlanRestore(restore_id=held.id, host_id="h1")
    await asyncio.sleep(0.2)  # a second plan would have arrived by now
    assert rig.plans.empty()
    doc = await rig.db.find_one(Coll.RESTORES, {"_id": held.id})
    assert doc is not None and doc["fence_token"] == 1
    assert [h["to"] for h in doc["history"]] == ["scheduled", "queued"]


async def test_a_once_time_already_past_is_refused_at_create(rig: Rig) -> None:
    ids = await setup(rig)
    rig.clock.now = AT + timedelta(minutes=2)
    late = r.RestoreCreate(actor=ADMIN, spec=spec([ids["a_new"]], schedule=once(AT)))
    with pytest.raises(EdgebackError) as err:
        await rig.call(r.RESTORE_CREATE, late, r.RestoreCreated)
    assert (err.value.code, err.value.details["codes"]) == ("invalid_restore", ["once_time_past"])
    assert await rig.db.count(Coll.RESTORES, {}) == 0
    rig.clock.now = AT + timedelta(seconds=30)  # within the grace: due at once
    made = await rig.call(r.RESTORE_CREATE, late, r.RestoreCreated)
    assert made.restore.due_at == AT


async def test_a_stale_scheduler_queues_nothing(rig: Rig) -> None:
    ids = await setup(rig)
    held = await verified(rig, ids["a_new"], once(AT))
    a, b = rig.scheduler("a", ttl_s=5), rig.scheduler("b", ttl_s=5)
    assert await a.lease.hold() == 1
    rig.clock.now = AT + timedelta(seconds=1)
    assert await b.lease.hold() == 2  # a's lease expired: b took over
    client = CatalogClient(rig.bus, "a", timeout_s=5)
    with pytest.raises(LeaseLostError):
        await client.queue_restores(1, rig.clock.now, late_limit_s=0, after=None, limit=10)
    assert await a.step() is None and a.lease.token is None
    assert await rig.state(held.id) == "scheduled" and rig.plans.empty()
    report = await b.step()
    assert report is not None and [x.outcome for x in report.restores] == ["queued"]
    assert (await rig.plan()).restore_id == held.id


async def test_missed_times_are_queued_late_within_the_limit_else_expired(rig: Rig) -> None:
    ids = await setup(rig)
    late = await verified(rig, ids["a_new"], once(AT))
    later = await verified(rig, ids["a_old"], once(AT + timedelta(hours=2)))
    stale = await verified(rig, ids["a_old"], once(AT - timedelta(minutes=50)))
    # no scheduler until AT + 2h30: `stale` is 3h20 late, `late` 2h30, `later` 30 min
    rig.clock.now = AT + timedelta(hours=2, minutes=30)
    report = await rig.scheduler("a", late_limit_s=3 * 3600).step()
    assert report is not None
    got = {x.restore_id: (x.outcome, x.late_by_s) for x in report.restores}
    assert got == {
        stale.id: ("expired", 200 * 60.0),
        late.id: ("queued", 150 * 60.0),
        later.id: ("queued", 30 * 60.0),
    }
    assert {(await rig.plan()).restore_id for _ in range(2)} == {late.id, later.id}
    info = await rig.call(
        r.RESTORE_GET, r.RestoreGet(actor=ADMIN, restore_id=stale.id), r.RestoreInfo
    )
    assert info.state == "expired" and "missed its time by 12000 s" in info.reason


async def test_a_manual_restore_is_run_by_hand_once(rig: Rig) -> None:
    ids = await setup(rig)
    held = await verified(rig, ids["a_new"], {"kind": "manual"})
    rig.clock.now += timedelta(days=30)
    report = await rig.scheduler("a").step()
    assert report is not None and report.restores == []  # never by the scheduler
    run = r.RestoreRun(actor=ADMIN, restore_id=held.id)
    ran = await rig.call(r.RESTORE_RUN, run, r.RestoreInfo)
    assert ran.state == "queued"
    assert await rig.plan() == r.PlanRestore(restore_id=held.id, host_id="h1")
    assert await rig.code_of(r.RESTORE_RUN, run) == "restore_not_runnable"
    audit = await rig.db.find(
        Coll.AUDIT_LOG, {"resource": f"restore/{held.id}", "action": "restore.run"}
    )
    assert len(audit) == 1


async def test_runs_of_anything_but_a_scheduled_manual_restore_are_refused(rig: Rig) -> None:
    ids = await setup(rig)
    timed = await verified(rig, ids["a_new"], once(AT))
    create = r.RestoreCreate(actor=ADMIN, spec=spec([ids["a_new"]], schedule={"kind": "manual"}))
    pending = (await rig.call(r.RESTORE_CREATE, create, r.RestoreCreated)).restore
    manual = await verified(rig, ids["a_old"], {"kind": "manual"})
    cancel = r.RestoreCancel(actor=ADMIN, restore_id=manual.id)
    await rig.call(r.RESTORE_CANCEL, cancel, r.RestoreInfo)
    for restore_id in (timed.id, pending.id, manual.id):
        before = await rig.db.find_one(Coll.RESTORES, {"_id": restore_id})
        run = r.RestoreRun(actor=ADMIN, restore_id=restore_id)
        assert await rig.code_of(r.RESTORE_RUN, run) == "restore_not_runnable"
        assert await rig.db.find_one(Coll.RESTORES, {"_id": restore_id}) == before
    # an operator cannot run a restore it cannot see: it does not exist for it
    await rig.call(catalog_rpc.GROUP_CREATE, m.GroupCreate(name="g1"), m.GroupInfo)
    made = m.UserCreate(name="op", role="operator", groups=["g1"])
    await rig.call(catalog_rpc.USER_CREATE, made, m.UserInfo)
    other = r.RestoreRun(actor=m.ActorRef(user="op"), restore_id=timed.id)
    assert await rig.code_of(r.RESTORE_RUN, other) == "not_found"
    assert rig.plans.empty()


async def test_only_the_scheduler_queues_due_restores(rig: Rig, open_bus: BusOpener) -> None:
    ids = await setup(rig)
    held = await verified(rig, ids["a_new"], once(AT))
    rig.clock.now = AT
    async with open_bus("scheduler") as as_scheduler, open_bus("api") as as_api:
        client = CatalogClient(as_scheduler, "sched-1", timeout_s=5)
        token = (await client.acquire(30)).token
        ask = s.QueueDueRestores(actor=ADMIN, holder="sched-1", token=token, before=AT)
        with pytest.raises(EdgebackError) as refused:
            await as_api.call(s.SCHEDULE_QUEUE_RESTORES, ask, s.QueueDueRestoresReply, timeout=5)
        assert refused.value.code == "permission_denied"
        assert await rig.state(held.id) == "scheduled"
        done = await client.queue_restores(token, AT, late_limit_s=0, after=None, limit=10)
    assert [(x.restore_id, x.outcome) for x in done.restores] == [(held.id, "queued")]
    assert (await rig.plan()).restore_id == held.id


async def test_a_plan_lost_between_queuing_and_sending_is_sent_again(rig: Rig) -> None:
    ids = await setup(rig)
    sent = await verified(rig, ids["a_new"], {"kind": "manual"})
    await rig.call(r.RESTORE_RUN, r.RestoreRun(actor=ADMIN, restore_id=sent.id), r.RestoreInfo)
    assert (await rig.plan()).restore_id == sent.id
    doc = await rig.db.find_one(Coll.RESTORES, {"_id": sent.id})
    assert doc is not None and doc["plan_sent_at"] == T0 and doc["queued_at"] == T0
    # a catalog that stopped between its two writes: queued, its plan never sent
    lost = await verified(rig, ids["a_old"], {"kind": "manual"})
    queued = {"$set": {"state": "queued", "queued_at": T0}}
    await rig.db.update(Coll.RESTORES, {"_id": lost.id}, queued)
    a = rig.scheduler("a")
    rig.clock.now = T0 + timedelta(seconds=59)
    await a.step()
    assert rig.plans.empty()  # not yet: its catalog may be sending it now
    rig.clock.now = T0 + timedelta(seconds=61)
    await a.step()
    assert await rig.plan() == r.PlanRestore(restore_id=lost.id, host_id="h1")
    doc = await rig.db.find_one(Coll.RESTORES, {"_id": lost.id})
    assert doc is not None and doc["plan_sent_at"] == rig.clock.now
    rig.clock.now += timedelta(minutes=5)
    await a.step()
    await asyncio.sleep(0.2)  # another plan would have arrived by now
    assert rig.plans.empty()  # each sent once


async def test_running_a_manual_restore_needs_its_target_platform_in_sight(rig: Rig) -> None:
    """A manual restore is run without a code: an operator who sees the backup host but
    not the platform of the VM it writes into cannot run it (it does not exist for it)."""
    ids = await setup(rig)
    for group in ("g1", "g2"):
        await rig.call(catalog_rpc.GROUP_CREATE, m.GroupCreate(name=group), m.GroupInfo)
    grant = m.HostAuthorize(actor=ADMIN, host_id=ids["host"], groups=["g1", "g2"])
    await rig.call(catalog_rpc.HOST_AUTHORIZE, grant, m.HostInfo)
    platform = await rig.call(
        catalog_rpc.PLATFORM_REGISTER, register(ids["host"], groups=["g2"]), m.PlatformInfo
    )
    onto = [r.DiskMap(source_disk_id=d, target_disk_id=d) for d in ("d0", "d1")]
    into = r.RestoreTarget(new_path=r.NewPath(platform_id=platform.id, vm_id="vm-9", disks=onto))
    made = spec([ids["a_new"]], schedule={"kind": "manual"}, target=into)
    created = await rig.call(
        r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=made), r.RestoreCreated
    )
    code = created.verification_code
    start = r.RestoreStart(actor=ADMIN, restore_id=created.restore.id, verification_code=code)
    assert (await rig.call(r.RESTORE_START, start, r.RestoreInfo)).state == "scheduled"
    for name, groups in (("op1", ["g1"]), ("op12", ["g1", "g2"])):
        user = m.UserCreate(name=name, role="operator", groups=groups)
        await rig.call(catalog_rpc.USER_CREATE, user, m.UserInfo)
    blind = r.RestoreRun(actor=m.ActorRef(user="op1"), restore_id=created.restore.id)
    assert await rig.code_of(r.RESTORE_RUN, blind) == "not_found"
    assert await rig.state(created.restore.id) == "scheduled" and rig.plans.empty()
    seeing = r.RestoreRun(actor=m.ActorRef(user="op12"), restore_id=created.restore.id)
    assert (await rig.call(r.RESTORE_RUN, seeing, r.RestoreInfo)).state == "queued"
