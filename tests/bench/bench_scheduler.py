"""Scheduler benchmark: lag from due time to ``StartRun`` published, and catalog DB
operations per due run, with 10,000 enabled jobs in the catalog DB.

Real RabbitMQ and catalog DB (``EDGEBACK_AMQP_URL``, ``EDGEBACK_MONGO_URL``); the
catalog and one scheduler run in this process on the real clock. ``--due`` of the
jobs are ``once`` schedules spread over ``--window-s`` seconds; the rest are due
tomorrow, so they only cost what the due query does not read. Lag is measured where a
consumer of the commands exchange receives each ``StartRun``. DB operations are counted
at the catalog's adapter (every find, update, insert) while the scheduler runs.

    python -m tests.bench.bench_scheduler [--jobs 10000] [--due 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from typing import Any

from tests.integration.conftest import TEST_IDENTITIES
from tests.support.scheduled import StartRunCounter, insert_job

from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import QUEUES, Topology
from edgeback_core.lifecycle import InFlight
from edgeback_core.messages.schedule import Daily, Once, Schedule
from edgeback_core.settings import Secret
from edgeback_scheduler.catalog import CatalogClient
from edgeback_scheduler.firing import Firing
from edgeback_scheduler.leader import LeaderLease
from edgeback_scheduler.scheduler import Scheduler


class CountingDb(CatalogDb):
    """The catalog's adapter, counting every operation it sends to the database."""

    ops = 0

    async def find_one(self, coll: Coll, query: Mapping[str, Any]) -> Doc | None:
        CountingDb.ops += 1
        return await super().find_one(coll, query)

    async def find(self, coll: Coll, query: Mapping[str, Any], **kw: Any) -> list[Doc]:
        CountingDb.ops += 1
        return await super().find(coll, query, **kw)

    async def update(
        self, coll: Coll, query: Mapping[str, Any], change: Mapping[str, Any]
    ) -> Doc | None:
        CountingDb.ops += 1
        return await super().update(coll, query, change)

    async def insert(self, coll: Coll, doc: Mapping[str, Any]) -> None:
        CountingDb.ops += 1
        await super().insert(coll, doc)


def due_soon(due: int, start: datetime, window_s: float) -> list[Schedule]:
    step = window_s / max(due, 1)
    return [
        Once(tz="UTC", at=(start + timedelta(seconds=int(i * step))).replace(tzinfo=None))
        for i in range(due)
    ]


POPULATE_STREAMS = 8  # inserts in flight: a burst of hundreds of connections can wedge
# the catalog DB server on a loaded two-core machine (seen once in CI)


async def populate(db: CatalogDb, plan: list[Schedule], anchor: datetime, tag: str) -> None:
    async def stream(first: int) -> None:
        for i in range(first, len(plan), POPULATE_STREAMS):
            await insert_job(db, f"{tag}-{i:05d}", plan[i], anchor)

    async with asyncio.timeout(60 + len(plan) / 50):
        await asyncio.gather(*(stream(k) for k in range(POPULATE_STREAMS)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    amqp, mongo = os.environ["EDGEBACK_AMQP_URL"], os.environ["EDGEBACK_MONGO_URL"]
    topology = Topology(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    async with CountingDb.open(mongo, f"bench_sched_{uuid.uuid4().hex[:8]}") as db:
        try:
            t0, anchor = time.monotonic(), datetime.now(UTC).replace(microsecond=0)
            later = (anchor + timedelta(hours=12)).time()
            idle: list[Schedule] = [Daily(tz="UTC", at=wall(later.hour, later.minute))]
            await populate(db, idle * (args.jobs - args.due), anchor, "idle")
            anchor = datetime.now(UTC).replace(microsecond=0)
            start = anchor + timedelta(seconds=args.lead_s)
            await populate(db, due_soon(args.due, start, args.window_s), anchor, "due")
            populate_s = time.monotonic() - t0
            return await _run(args, db, amqp=amqp, topology=topology, populate_s=populate_s)
        finally:
            await db.drop()


async def _run(
    args: argparse.Namespace,
    db: CatalogDb,
    *,
    amqp: str,
    topology: Topology,
    populate_s: float,
) -> dict[str, Any]:
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    runs, lags = StartRunCounter(), []
    async with AmqpBus.open(amqp, topology) as bus:
        await serve_catalog(bus, CatalogRpc(Catalog.build(db, box, probe=None), TEST_IDENTITIES))
        await runs.consume(bus, "bench.start_runs")
        client = CatalogClient(bus, "bench", timeout_s=30)
        firing = Firing(bus, client, lambda: datetime.now(UTC), page_size=200, late_after_s=60)
        scheduler = Scheduler(LeaderLease(client, ttl_s=30), firing, tick_s=args.tick_s)
        stopping = asyncio.Event()
        CountingDb.ops = 0
        loop = asyncio.create_task(scheduler.run(stopping, InFlight()))
        deadline = time.time() + args.lead_s + args.window_s + 60
        while len(runs.commands) < args.due and time.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        stopping.set()
        async with asyncio.timeout(60):  # a tick in flight ends within its RPC timeouts
            await loop
        ops = CountingDb.ops
        now_wall = time.time() - asyncio.get_running_loop().time()
        for command, received in zip(runs.commands, runs.received_at, strict=True):
            assert command.due_at is not None
            lags.append(now_wall + received - command.due_at.timestamp())
        await bus.delete_topology(list(QUEUES))
    doubled = sum(1 for n in runs.per_slot.values() if n > 1)
    return {
        "jobs": args.jobs,
        "due_runs": args.due,
        "started": len(runs.commands),
        "doubled": doubled,
        "tick_s": args.tick_s,
        "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_p99_s": round(percentile(lags, 0.99), 3) if lags else None,
        "lag_max_s": round(max(lags), 3) if lags else None,
        "p50_ratio_vs_half_tick": round(statistics.median(lags) / (args.tick_s / 2), 2)
        if lags
        else None,
        "catalog_db_ops": ops,
        "catalog_db_ops_per_due_run": round(ops / max(len(runs.commands), 1), 2),
        "populate_s": round(populate_s, 1),
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
    parser.add_argument("--lead-s", type=float, default=8.0)
    parser.add_argument("--tick-s", type=float, default=1.0)
    parser.add_argument("--deadline-s", type=float, default=1800.0, help="give up after this")
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
