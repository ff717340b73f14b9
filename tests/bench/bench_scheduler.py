"""Scheduler benchmark: lag from due time to ``StartRun`` published, catalog DB
operations and scheduler CPU per due run, with 10,000 enabled jobs in the catalog DB.

Real RabbitMQ and catalog DB (``EDGEBACK_AMQP_URL``, ``EDGEBACK_MONGO_URL``). The
catalog serves from this process; the scheduler is its own process (``python -m
edgeback_scheduler``, real clock), so its CPU is its own. Jobs are seeded straight into
the catalog DB with bulk inserts of the catalog's own documents. ``--due`` of them are
``once`` schedules spread over ``--window-s`` seconds; the rest are due tomorrow, so
they only cost what the due query does not read. Lag is measured where a consumer of
the commands exchange receives each ``StartRun``. From the first due time until every
run started: DB operations are counted at the catalog's adapter, those of the
scheduler's RPCs (lease, due jobs, marks) apart from the catalog's own work on the
``StartRun`` it also consumes; CPU is read from ``/proc`` for the scheduler and from
this process for the catalog.

    python -m tests.bench.bench_scheduler [--jobs 10000] [--due 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from pathlib import Path
from typing import Any, TypeVar

from tests.integration.conftest import TEST_IDENTITIES
from tests.support.processes import ServiceProcess, free_port
from tests.support.scheduled import StartRunCounter, job_document

from edgeback_catalog.duejobs import DueJobs
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.leadership import Leadership
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import QUEUES, Topology
from edgeback_core.messages.schedule import Daily, Once, Schedule
from edgeback_core.settings import Secret

T = TypeVar("T")


class CountingDb(CatalogDb):
    """The catalog's adapter, counting every operation it sends to the database and the
    time spent waiting for them."""

    ops = 0
    busy_s = 0.0

    async def _counted(self, op: Awaitable[T]) -> T:
        self.ops += 1
        t0 = time.monotonic()
        try:
            return await op
        finally:
            self.busy_s += time.monotonic() - t0

    async def find_one(self, coll: Coll, query: Mapping[str, Any]) -> Doc | None:
        return await self._counted(super().find_one(coll, query))

    async def find(self, coll: Coll, query: Mapping[str, Any], **kw: Any) -> list[Doc]:
        return await self._counted(super().find(coll, query, **kw))

    async def count(self, coll: Coll, query: Mapping[str, Any]) -> int:
        return await self._counted(super().count(coll, query))

    async def update(
        self, coll: Coll, query: Mapping[str, Any], change: Mapping[str, Any]
    ) -> Doc | None:
        return await self._counted(super().update(coll, query, change))

    async def update_each(
        self, coll: Coll, updates: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> int:
        return await self._counted(super().update_each(coll, updates))

    async def upsert(self, coll: Coll, query: Mapping[str, Any], change: Mapping[str, Any]) -> Doc:
        return await self._counted(super().upsert(coll, query, change))

    async def insert(self, coll: Coll, doc: Mapping[str, Any]) -> None:
        await self._counted(super().insert(coll, doc))

    async def delete(self, coll: Coll, query: Mapping[str, Any]) -> bool:
        return await self._counted(super().delete(coll, query))


def due_soon(due: int, start: datetime, window_s: float) -> list[Schedule]:
    step = window_s / max(due, 1)
    return [
        Once(tz="UTC", at=(start + timedelta(seconds=int(i * step))).replace(tzinfo=None))
        for i in range(due)
    ]


async def populate(
    db: CatalogDb, plan: list[Schedule], anchor: datetime, tag: str, batch: int
) -> float:
    """Insert one job per schedule, ``batch`` per command; the last batch's jobs per
    second (inserts slow down as the collection grows on some servers)."""
    docs = [job_document(f"{tag}-{i:05d}", s, anchor) for i, s in enumerate(plan)]
    rate = float("inf")
    for first in range(0, len(docs), batch):
        t0 = time.monotonic()
        await db.insert_many(Coll.JOBS, docs[first : first + batch])
        rate = len(docs[first : first + batch]) / max(time.monotonic() - t0, 1e-6)
    return rate


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclasses.dataclass
class Meters:
    """What is read at the first due time and again once every run started."""

    catalog: CountingDb
    scheduling: CountingDb
    scheduler: ServiceProcess

    def read(self) -> dict[str, float]:
        return {
            "scheduling_ops": self.scheduling.ops,
            "scheduling_db_s": self.scheduling.busy_s,
            "all_ops": self.scheduling.ops + self.catalog.ops,
            "scheduler_cpu_s": self.scheduler.cpu_s(),
            "catalog_cpu_s": time.process_time(),
            "wall_s": time.monotonic(),
        }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    mongo, name = os.environ["EDGEBACK_MONGO_URL"], f"bench_sched_{uuid.uuid4().hex[:8]}"
    amqp, prefix = os.environ["EDGEBACK_AMQP_URL"], f"bench-{uuid.uuid4().hex[:8]}."
    async with (
        CountingDb.open(mongo, name) as db,
        CountingDb.open(mongo, name) as scheduling,
        AmqpBus.open(amqp, Topology(prefix=prefix)) as bus,  # before minutes of seeding
    ):
        try:
            t0, anchor = time.monotonic(), datetime.now(UTC).replace(microsecond=0)
            later = (anchor + timedelta(hours=12)).time()
            idle: list[Schedule] = [Daily(tz="UTC", at=wall(later.hour, later.minute))]
            rate = await populate(db, idle * (args.jobs - args.due), anchor, "idle", args.batch)
            seeded = {"idle_seed_s": round(time.monotonic() - t0, 1)}
            return seeded | await _run(args, db, scheduling, bus, amqp=amqp, rate=rate)
        finally:
            await bus.delete_topology(list(QUEUES))
            await db.drop()


async def seed_due(args: argparse.Namespace, db: CatalogDb, rate: float) -> datetime:
    """Seed the due jobs, the first due once all of them are in (at twice the rate the
    idle ones went in); that first due time."""
    anchor = datetime.now(UTC).replace(microsecond=0)
    start = anchor + timedelta(seconds=math.ceil(args.lead_s + 2 * args.due / rate))
    await populate(db, due_soon(args.due, start, args.window_s), anchor, "due", args.batch)
    return start


def scheduler_process(amqp: str, prefix: str, tick_s: float, log: Path) -> ServiceProcess:
    env = {
        "EDGEBACK_AMQP_URL": amqp,
        "EDGEBACK_BUS_PREFIX": prefix,
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_SCHEDULER_TICK_S": str(tick_s),
        "EDGEBACK_SCHEDULER_LEASE_TTL_S": "30",
        "EDGEBACK_SCHEDULER_RPC_TIMEOUT_S": "30",
        "EDGEBACK_SCHEDULER_MAINTENANCE_INTERVAL_S": "0",
    }
    port = free_port()
    env["EDGEBACK_SCHEDULER_HEALTH_PORT"] = str(port)
    return ServiceProcess("scheduler", port, env, log)


async def _run(
    args: argparse.Namespace,
    db: CountingDb,
    scheduling: CountingDb,
    bus: AmqpBus,
    *,
    amqp: str,
    rate: float,
) -> dict[str, Any]:
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    catalog = Catalog.build(db, box, probe=None)
    # the scheduler's RPCs count on their own adapter; the rest of the catalog on `db`
    leadership = Leadership(scheduling, catalog.clock)
    catalog = dataclasses.replace(
        catalog, leadership=leadership, due_jobs=DueJobs(scheduling, leadership)
    )
    runs = StartRunCounter()
    log = Path(tempfile.mkdtemp(prefix="bench-scheduler-")) / "scheduler.log"
    consumers = await serve_catalog(bus, CatalogRpc(catalog, TEST_IDENTITIES))
    consumers.append(await runs.consume(bus, "bench.start_runs"))
    proc = scheduler_process(amqp, bus.topology.prefix, args.tick_s, log)
    proc.start()
    try:
        await proc.wait_healthy()
        start = await seed_due(args, db, rate)
        meters = Meters(db, scheduling, proc)
        late_start_s = (datetime.now(UTC) - start).total_seconds()
        await asyncio.sleep(max(-late_start_s, 0))
        before = meters.read() | {"runs_created": 0}
        deadline = time.monotonic() + args.window_s + args.grace_s
        while len(runs.commands) < args.due and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        after = meters.read()
        after["runs_created"] = await db.count(Coll.RUNS, {})  # by the catalog, meanwhile
        # a tick in flight ends within its RPC timeouts
        assert await asyncio.to_thread(proc.terminate, 60) == 0, proc.log_text()[-4000:]
    finally:
        proc.kill()
        # the catalog may still be starting runs: stopped before the exchanges go, or
        # its publishes to them close the channel the clean-up needs
        async with asyncio.timeout(120):
            await asyncio.gather(*(consumer.stop() for consumer in consumers))
    used = {key: after[key] - before[key] for key in before}
    return report(args, runs, used, late_start_s=late_start_s)


def lags_of(runs: StartRunCounter) -> list[float]:
    now_wall = time.time() - asyncio.get_running_loop().time()
    lags = []
    for command, received in zip(runs.commands, runs.received_at, strict=True):
        assert command.due_at is not None
        lags.append(now_wall + received - command.due_at.timestamp())
    return lags


def report(
    args: argparse.Namespace,
    runs: StartRunCounter,
    used: dict[str, float],
    *,
    late_start_s: float,
) -> dict[str, Any]:
    lags, started = lags_of(runs), max(len(runs.commands), 1)
    per_due_run = {
        "scheduling_db_ops_per_due_run": round(used["scheduling_ops"] / started, 3),
        "catalog_db_ops_per_due_run": round(used["all_ops"] / started, 3),
        "scheduler_cpu_s_per_1000_due_runs": round(used["scheduler_cpu_s"] * 1000 / started, 2),
        "catalog_cpu_s_per_1000_due_runs": round(used["catalog_cpu_s"] * 1000 / started, 2),
    }
    return {
        "jobs": args.jobs,
        "due_runs": args.due,
        "started": len(runs.commands),
        "doubled": sum(1 for n in runs.per_slot.values() if n > 1),
        "tick_s": args.tick_s,
        "window_s": args.window_s,
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p99_s": round(percentile(lags, 0.99), 3) if lags else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
        "first_due_late_s": round(max(late_start_s, 0.0), 1),
        "measured_s": round(used["wall_s"], 1),
        "scheduling_db_ops": int(used["scheduling_ops"]),
        "runs_created_by_catalog": int(used["runs_created"]),
        "scheduling_db_wait_s": round(used["scheduling_db_s"], 2),
        "catalog_db_ops": int(used["all_ops"]),
        **per_due_run,
        "scheduler_cpu_s": round(used["scheduler_cpu_s"], 2),
        "catalog_cpu_s": round(used["catalog_cpu_s"], 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


async def bounded(work: Coroutine[Any, Any, dict[str, Any]], deadline_s: float) -> dict[str, Any]:
    """``work`` within ``deadline_s``: a stuck step fails with its own traceback instead
    of holding the test run until pytest's thread timeout ends it."""
    async with asyncio.timeout(deadline_s):
        return await work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--lead-s", type=float, default=10.0, help="scheduler start-up room")
    parser.add_argument("--grace-s", type=float, default=120.0, help="wait after the window")
    parser.add_argument("--tick-s", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=200, help="jobs per insert command")
    parser.add_argument("--deadline-s", type=float, default=3600.0, help="give up after this")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = asyncio.run(bounded(measure(args), args.deadline_s))
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    return 0 if figures["started"] == args.due and figures["doubled"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
