"""The scheduler's tick against the real catalog DB, over the in-memory bus, with one
injected clock for the catalog and the scheduler: a simulated day fires every slot
once, a restart between publishing and marking starts one run, missed slots fire once
and late, a stale instance is fenced off, a job never overlaps itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest
from tests.integration.conftest import TEST_IDENTITIES
from tests.support.scheduled import StartRunCounter, insert_job

from edgeback_catalog.domain import Actor, JobId, Role
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.runstart import StartRequest
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.port import Bus, Envelope
from edgeback_core.bus.topology import START_RUN, Topology, worker_runs
from edgeback_core.errors import JobBusyError, LeaseLostError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages.runs import PlanRun, StartRun
from edgeback_core.messages.schedule import Daily, Hourly, Manual, Weekly
from edgeback_core.schedules import next_run
from edgeback_core.settings import Secret
from edgeback_scheduler.catalog import CatalogClient
from edgeback_scheduler.firing import Firing, start_run
from edgeback_scheduler.leader import LeaderLease
from edgeback_scheduler.scheduler import Scheduler

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 30, 22, 0, tzinfo=UTC)  # Europe/Berlin springs forward on the 31st
SERVICE = Actor(name="scheduler", role=Role.SERVICE)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - START).total_seconds()


@dataclass
class Rig:
    db: CatalogDb
    catalog: Catalog
    bus: Bus
    clock: Clock
    runs: StartRunCounter

    def scheduler(self, name: str, ttl_s: float = 30.0) -> Scheduler:
        client = CatalogClient(self.bus, name, timeout_s=5)
        firing = Firing(self.bus, client, self.clock, page_size=3, late_after_s=60)
        lease = LeaderLease(client, ttl_s=ttl_s, monotonic=self.clock.monotonic)
        return Scheduler(lease, firing, tick_s=1)


@pytest.fixture
async def rig(mongo_url: str) -> AsyncIterator[Rig]:
    clock, broker, topology = Clock(), MemoryBroker(), Topology(prefix="t.")
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            CatalogDb.open(mongo_url, f"test_sched_{uuid.uuid4().hex[:12]}")
        )
        stack.push_async_callback(db.drop)
        box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
        catalog = Catalog.build(db, box, clock=clock, probe=None)
        server = await stack.enter_async_context(MemoryBus.open(broker, topology))
        await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
        # the scheduler's own identity: the catalog answers it only what a scheduler may ask
        bus = await stack.enter_async_context(MemoryBus.open(broker, topology, user_id="scheduler"))
        runs = StartRunCounter()
        await runs.consume(bus, "test.start_runs")
        # the catalog consumes StartRun too and sends PlanRun to the job's host (h1): a
        # queue of that host keeps its runs pending (unroutable, they would fail at once)
        await bus.consume(worker_runs(BackupHostId("h1")), ignore_plan, PlanRun)
        yield Rig(db, catalog, bus, clock, runs)


async def ignore_plan(_plan: PlanRun, _envelope: Envelope) -> None:
    """No worker in these tests: a plan is taken and nothing is done with it."""


def slots(schedule: Hourly | Daily | Weekly, anchor: datetime, until: datetime) -> list[datetime]:
    found, after = [], anchor - timedelta(microseconds=1)
    while (nxt := next_run(schedule, after, anchor=anchor)) is not None and nxt <= until:
        found.append(nxt)
        after = nxt
    return found


async def test_a_simulated_day_fires_every_slot_once(rig: Rig) -> None:
    schedules: dict[str, Hourly | Daily | Weekly | Manual] = {
        "hourly": Hourly(tz="Europe/Berlin", start=time(0), end=time(23, 59), every=1),
        "quarter": Hourly(
            tz="Asia/Shanghai", start=time(6), end=time(18), every=15, unit="minutes"
        ),
        "daily": Daily(tz="Europe/Berlin", at=time(2, 30)),  # in the DST gap: fires at 03:00
        "weekly": Weekly(tz="America/New_York", at=time(20), weekdays=("sun",)),
        "manual": Manual(),
    }
    ids = {name: await insert_job(rig.db, name, s, START) for name, s in schedules.items()}
    a = rig.scheduler("a", ttl_s=600)
    end = START + timedelta(days=1)
    while rig.clock.now <= end:
        await a.step()
        rig.clock.now += timedelta(minutes=5)
    for name, schedule in schedules.items():
        want = [] if isinstance(schedule, Manual) else slots(schedule, START, end)
        got = sorted(d for (job, d) in rig.runs.per_slot if job == ids[name] and d is not None)
        assert got == want, name
    assert set(rig.runs.per_slot.values()) == {1}
    assert max(c.late_by_s for c in rig.runs.commands) < 300
    assert a.lease.token == 1  # renewed every tick, never taken over


def request(command: StartRun) -> StartRequest:
    return StartRequest(
        job_id=JobId(command.job_id),
        requested_by=command.requested_by,
        idempotency_key=command.idempotency_key,
    )


async def test_restart_between_publish_and_mark_starts_one_run(rig: Rig) -> None:
    job = await insert_job(rig.db, "daily", Daily(tz="UTC", at=time(23)), START)
    rig.clock.now = START.replace(hour=23, minute=0, second=5)
    a, b = rig.scheduler("a", ttl_s=5), rig.scheduler("b", ttl_s=5)
    assert await a.lease.hold() == 1
    page = await CatalogClient(rig.bus, "a", timeout_s=5).due(rig.clock.now, None, 10)
    # `a` publishes, then dies before marking the slot fired
    await rig.bus.publish("commands", START_RUN, start_run(page.jobs[0], rig.clock.now))
    assert await b.step() is None  # a's lease is still live: b stands by
    rig.clock.now += timedelta(seconds=6)
    report = await b.step()
    assert report is not None and report.marked == 1 and b.lease.token == 2
    first, second = rig.runs.commands
    assert (first.job_id, first.idempotency_key) == (second.job_id, second.idempotency_key)
    # the catalog's own StartRun consumer may have made the run already: either way one
    runs = [await rig.catalog.run_starter.start(SERVICE, request(c)) for c in (first, second)]
    assert runs[0].run.id == runs[1].run.id and not runs[1].applied
    assert await rig.db.count(Coll.RUNS, {"job_id": job}) == 1
    doc = await rig.db.find_one(Coll.JOBS, {"_id": job})
    assert doc is not None and doc["next_due"] > rig.clock.now
    assert doc["fence_token"] == 2


async def test_missed_slots_fire_once_late(rig: Rig) -> None:
    hourly = Hourly(tz="UTC", start=time(0), end=time(23), every=1)
    job = await insert_job(rig.db, "hourly", hourly, START)
    rig.clock.now = START + timedelta(hours=5, minutes=30)  # no scheduler for 5.5 hours
    report = await rig.scheduler("a").step()
    assert report is not None and [c.job_id for c in report.fired] == [job]
    (late,) = rig.runs.commands
    assert late.due_at == START and late.late_by_s == 5.5 * 3600
    doc = await rig.db.find_one(Coll.JOBS, {"_id": job})
    assert doc is not None and doc["next_due"] == START + timedelta(hours=6)
    assert doc["last_due"] == START and doc["last_fired"] == rig.clock.now


async def test_a_stale_instance_is_fenced(rig: Rig) -> None:
    job = await insert_job(rig.db, "d", Daily(tz="UTC", at=time(23)), START)
    a, b = rig.scheduler("a", ttl_s=5), rig.scheduler("b", ttl_s=5)
    assert await a.lease.hold() == 1
    rig.clock.now = START.replace(hour=23, second=1)
    await b.lease.hold()  # a's lease expired meanwhile: b takes over with a new token
    assert b.lease.token == 2
    client = CatalogClient(rig.bus, "a", timeout_s=5)
    page = await client.due(rig.clock.now, None, 10)
    with pytest.raises(LeaseLostError):
        await client.mark_fired(1, rig.clock.now, page.jobs)
    assert await a.step() is None and a.lease.token is None
    doc = await rig.db.find_one(Coll.JOBS, {"_id": job})
    assert doc is not None and doc["next_due"] == page.jobs[0].due  # a changed nothing


async def test_a_job_never_overlaps_itself(rig: Rig) -> None:
    every = Hourly(tz="UTC", start=time(0), end=time(23), every=1)
    await insert_job(rig.db, "h", every, START)
    a = rig.scheduler("a")
    for _ in range(2):
        await a.step()
        rig.clock.now += timedelta(hours=1)
    first, second = rig.runs.commands
    await rig.catalog.run_starter.start(SERVICE, request(first))
    with pytest.raises(JobBusyError):  # the consumer of StartRun then publishes RunSkipped
        await rig.catalog.run_starter.start(SERVICE, request(second))


async def test_disabled_jobs_are_not_due_and_enabling_skips_the_past(rig: Rig) -> None:
    every = Hourly(tz="UTC", start=time(0), end=time(23), every=1)
    job = await insert_job(rig.db, "h", every, START)
    admin = Actor(name="root", role=Role.ADMIN)
    off = await rig.catalog.jobs.set_enabled(admin, job, False)
    assert off.next_due is None
    rig.clock.now = START + timedelta(hours=3, minutes=10)
    assert await rig.scheduler("a").step() is not None and rig.runs.commands == []
    on = await rig.catalog.jobs.set_enabled(admin, job, True)
    assert on.next_due == START + timedelta(hours=4)


async def test_one_page_marks_each_job_on_its_own_condition(rig: Rig) -> None:
    daily = Daily(tz="UTC", at=time(23))
    ids = [await insert_job(rig.db, f"d{i}", daily, START) for i in range(4)]
    rig.clock.now = START.replace(hour=23, second=1)
    a = rig.scheduler("a")
    token = await a.lease.hold()
    assert token is not None
    page = await CatalogClient(rig.bus, "a", timeout_s=5).due(rig.clock.now, None, 10)
    assert sorted(j.job_id for j in page.jobs) == sorted(ids)
    # between the read and the mark: one job written by a newer token, one edited away
    await rig.db.update(Coll.JOBS, {"_id": ids[0]}, {"$set": {"fence_token": token + 1}})
    await rig.db.update(Coll.JOBS, {"_id": ids[1]}, {"$set": {"next_due": START}})
    fires = [(JobId(j.job_id), j.due) for j in page.jobs]
    done = await rig.catalog.due_jobs.mark_fired("a", token, rig.clock.now, fires)
    applied = {f.job_id: f.applied for f in done}
    assert applied == {ids[0]: False, ids[1]: False, ids[2]: True, ids[3]: True}
    tomorrow = START.replace(hour=23) + timedelta(days=1)
    assert {f.next_due for f in done if f.applied} == {tomorrow}
    for job, due in ((ids[0], page.jobs[0].due), (ids[1], START), (ids[2], tomorrow)):
        doc = await rig.db.find_one(Coll.JOBS, {"_id": job})
        assert doc is not None and doc["next_due"] == due
    again = await rig.catalog.due_jobs.mark_fired("a", token, rig.clock.now, fires)
    assert not any(f.applied for f in again)  # each slot is marked once
