"""Two scheduler processes (``python -m edgeback_scheduler``) against the real catalog
DB and RabbitMQ: SIGKILL the active one, the standby takes over, and over a simulated
day (an accelerated test clock: 1440 simulated seconds per real one) every slot of
every job is started exactly once: no run doubled, none lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from pathlib import Path

import pytest
from tests.integration.conftest import TEST_IDENTITIES
from tests.support.processes import ServiceProcess, free_port
from tests.support.scheduled import StartRunCounter, insert_job

from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import QUEUES, Topology
from edgeback_core.messages.schedule import Daily, Hourly
from edgeback_core.messages.scheduling import SCHEDULER_ROLE
from edgeback_core.schedules import next_run
from edgeback_core.settings import Secret
from edgeback_scheduler.clock import simulated

pytestmark = pytest.mark.integration

SPEED = 1440.0  # a simulated day in one real minute
TTL_S = 1.5  # takeover within TTL_S + tick: 36 simulated minutes, under the hourly step


@pytest.fixture
async def catalog_db(mongo_url: str) -> AsyncIterator[CatalogDb]:
    async with CatalogDb.open(mongo_url, f"test_failover_{uuid.uuid4().hex[:12]}") as db:
        yield db
        await db.drop()


def scheduler(name: str, prefix: str, amqp_url: str, origin: float, tmp: Path) -> ServiceProcess:
    env = {
        "EDGEBACK_AMQP_URL": amqp_url,
        "EDGEBACK_BUS_PREFIX": prefix,
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_SCHEDULER_TICK_S": "0.1",
        "EDGEBACK_SCHEDULER_LEASE_TTL_S": str(TTL_S),
        "EDGEBACK_SCHEDULER_TEST_CLOCK_ORIGIN": repr(origin),
        "EDGEBACK_SCHEDULER_TEST_CLOCK_SPEED": repr(SPEED),
    }
    port = free_port()
    env["EDGEBACK_SCHEDULER_HEALTH_PORT"] = str(port)
    return ServiceProcess("scheduler", port, env, tmp / f"{name}.log")


def slots(schedule: Hourly | Daily, anchor: datetime, until: datetime) -> list[datetime]:
    found, after = [], anchor - timedelta(microseconds=1)
    while (nxt := next_run(schedule, after, anchor=anchor)) is not None and nxt <= until:
        found.append(nxt)
        after = nxt
    return found


async def test_sigkill_of_the_active_scheduler_loses_and_doubles_nothing(
    amqp_url: str, catalog_db: CatalogDb, tmp_path: Path
) -> None:
    prefix, origin = f"t-{uuid.uuid4().hex[:10]}.", time.time()
    anchor = datetime.fromtimestamp(origin, UTC).replace(microsecond=0)
    schedules: list[Hourly | Daily] = [
        *(Hourly(tz="UTC", start=wall(0, 7 * k), end=wall(23, 59), every=1) for k in range(6)),
        Daily(tz="Europe/Berlin", at=wall(9, 30)),
    ]
    jobs = {await insert_job(catalog_db, f"j{i}", s, anchor): s for i, s in enumerate(schedules)}
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    runs = StartRunCounter()
    async with AsyncExitStack() as stack:
        bus = await stack.enter_async_context(AmqpBus.open(amqp_url, Topology(prefix=prefix)))
        stack.push_async_callback(lambda: bus.delete_topology([*QUEUES, *bus.declared.values()]))
        await serve_catalog(
            bus, CatalogRpc(Catalog.build(catalog_db, box, probe=None), TEST_IDENTITIES)
        )
        await runs.consume(bus, "test.failover.start_runs")
        procs = [scheduler(n, prefix, amqp_url, origin, tmp_path) for n in ("a", "b")]
        for proc in procs:
            proc.start()
            stack.callback(proc.kill)
            await proc.wait_healthy()
        await asyncio.sleep(20)  # a third of the simulated day
        leader = await catalog_db.find_one(Coll.LEADERS, {"_id": SCHEDULER_ROLE})
        assert leader is not None and leader["token"] == 1
        (active,) = [p for p in procs if f"-{p.pid}-" in leader["holder"]]
        (standby,) = [p for p in procs if p is not active]
        active.kill()  # SIGKILL: no release, the lease has to run out
        await asyncio.sleep(42)
        stopped = simulated(origin, 0, SPEED, now=time.time())
        # waited for in a thread: the catalog serving its last calls (the tick in flight,
        # the lease's release) runs on this event loop
        assert await asyncio.to_thread(standby.terminate, 10) == 0
        leader = await catalog_db.find_one(Coll.LEADERS, {"_id": SCHEDULER_ROLE})
        assert leader is not None and leader["token"] == 2
        assert f"-{standby.pid}-" in leader["holder"]
    counted = runs.per_slot
    assert set(counted.values()) == {1}, "a slot was started twice"
    settled = stopped - timedelta(hours=1)
    for job, schedule in jobs.items():
        want = slots(schedule, anchor, settled)
        got = sorted(d for (j, d), _ in counted.items() if j == job and d is not None)
        assert got[: len(want)] == want, f"{job}: lost slots"
    assert len(counted) >= 6 * 23 + 1
