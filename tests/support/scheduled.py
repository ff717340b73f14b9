"""Scheduled jobs written straight into a catalog DB, and a StartRun counter: what the
scheduler tests and benchmark set up (creating 10,000 jobs through the RPCs would
measure the job checks, not the scheduler)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime

from edgeback_catalog.domain import GroupName, Job, JobId
from edgeback_catalog.jobdocs import JobDoc, job_doc
from edgeback_catalog.jobschedule import schedule_fields
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.bus.port import Bus, ConsumerHandle, Envelope
from edgeback_core.bus.topology import START_RUN, QueueSpec
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import StartRun
from edgeback_core.messages.schedule import Schedule


def spec(name: str, schedule: Schedule) -> j.JobSpec:
    return j.JobSpec(
        name=name,
        content=j.JobContent(vms=[j.VmSelection(platform_id="p1")]),
        target=j.JobTarget(host_id="h1", pool=j.PoolRef(node_url="http://node:8080", name="p")),
        schedule=schedule,
    )


def job_document(
    name: str, schedule: Schedule, anchor: datetime, *, enabled: bool = True
) -> JobDoc:
    """A job's document as ``Jobs.create`` stores it, its schedule set at ``anchor``."""
    job = Job(
        id=JobId(uuid.uuid4().hex),
        revision=1,
        enabled=enabled,
        spec=spec(name, schedule),
        groups=frozenset({GroupName("ops")}),
        created_by="test",
        created_at=anchor,
        updated_at=anchor,
        **schedule_fields(schedule, anchor=anchor, enabled=enabled),
    )
    return job_doc(job)


async def insert_job(
    db: CatalogDb, name: str, schedule: Schedule, anchor: datetime, *, enabled: bool = True
) -> JobId:
    """Insert :func:`job_document`; its id."""
    doc = job_document(name, schedule, anchor, enabled=enabled)
    await db.insert(Coll.JOBS, doc)
    return JobId(doc["_id"])


class StartRunCounter:
    """Consumes every ``StartRun`` on the commands exchange (a queue of its own)."""

    def __init__(self) -> None:
        self.commands: list[StartRun] = []
        self.received_at: list[float] = []
        self.arrived = asyncio.Event()

    @property
    def per_slot(self) -> Counter[tuple[str, datetime | None]]:
        return Counter((c.job_id, c.due_at) for c in self.commands)

    async def on_start(self, command: StartRun, _envelope: Envelope) -> None:
        self.commands.append(command)
        self.received_at.append(asyncio.get_running_loop().time())
        self.arrived.set()

    async def consume(self, bus: Bus, name: str) -> ConsumerHandle:
        spec = QueueSpec(name=name, exchange="commands", bindings=(START_RUN,), prefetch=200)
        return await bus.consume(spec, self.on_start, StartRun)
