"""One tick of the active scheduler: fetch the due jobs, publish ``StartRun``, mark them.

For each page of due jobs (by due time) every ``StartRun`` is published first, then the
page is marked fired in one catalog call. A scheduler that dies in between fires those
slots again after the restart (or its standby does) with the same idempotency key, job
id + due time, from which the catalog derives the same run: a slot never starts two
runs, and is never dropped (it stays due until marked). A slot that fell due while no
scheduler ran fires once, late (``late_by_s``), and the catalog moves the job's next
due time past now, not to the next missed slot. Overlap is the catalog's to refuse: a
``StartRun`` for a job whose run is still active is answered ``job_busy`` and
``RunSkipped`` by whoever consumes it.

Then the verified restores of schedule ``once`` that are due: the catalog queues each
with a conditional update fenced by the token and publishes its ``PlanRestore``
(``restorequeue`` there), page by page; one due longer ago than ``restore_late_limit_s``
(0: no limit) is ended ``expired`` instead (``docs/restores.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog

from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import START_RUN
from edgeback_core.errors import EdgebackError, LeaseLostError
from edgeback_core.messages.runs import StartRun
from edgeback_core.messages.scheduling import DueJob, DueRestore
from edgeback_scheduler.catalog import CatalogClient
from edgeback_scheduler.clock import Clock

log = structlog.get_logger(__name__)

REQUESTED_BY = "scheduler"


def idempotency_key(due: datetime) -> str:
    """The key of one schedule slot of a job (the catalog pairs it with the job id)."""
    return f"schedule:{due.isoformat(timespec='milliseconds')}"


def start_run(job: DueJob, now: datetime) -> StartRun:
    return StartRun(
        job_id=job.job_id,
        requested_by=REQUESTED_BY,
        idempotency_key=idempotency_key(job.due),
        due_at=job.due,
        late_by_s=round(max((now - job.due).total_seconds(), 0.0), 3),
    )


@dataclass(kw_only=True)
class TickReport:
    fired: list[StartRun] = field(default_factory=list)
    marked: int = 0
    refused: int = 0
    """Marks the catalog did not apply (fired already, edited, disabled meanwhile)."""
    restores: list[DueRestore] = field(default_factory=list)
    """Due once restores and what became of each (queued, expired, held, ...)."""


class Firing:
    def __init__(
        self,
        bus: Bus,
        catalog: CatalogClient,
        clock: Clock,
        *,
        page_size: int,
        late_after_s: float,
        restore_late_limit_s: float = 3600.0,
    ) -> None:
        self._bus, self._catalog, self._clock = bus, catalog, clock
        self._page_size, self._late_after_s = page_size, late_after_s
        self._restore_late_limit_s = restore_late_limit_s

    async def tick(self, token: int) -> TickReport:
        """Fire everything due now; ``LeaseLostError`` if another instance took over."""
        report, now = TickReport(), self._clock()
        await self._fire_jobs(token, now, report)
        await self._queue_restores(token, now, report)
        return report

    async def _fire_jobs(self, token: int, now: datetime, report: TickReport) -> None:
        after = None
        while True:
            page = await self._catalog.due(now, after, self._page_size)
            if not page.jobs:
                return
            for job in page.jobs:
                report.fired.append(await self._publish(job, now))
            reply = await self._catalog.mark_fired(token, now, page.jobs)
            applied = sum(1 for result in reply.results if result.applied)
            report.marked += applied
            report.refused += len(reply.results) - applied
            if not page.more:
                return
            after = page.jobs[-1]

    async def _queue_restores(self, token: int, now: datetime, report: TickReport) -> None:
        after = None
        while True:
            page = await self._catalog.queue_restores(
                token,
                now,
                late_limit_s=self._restore_late_limit_s,
                after=after,
                limit=self._page_size,
            )
            for done in page.restores:
                if done.outcome != "held":
                    log.info(
                        "schedule.restore_due",
                        restore_id=done.restore_id,
                        outcome=done.outcome,
                        due=done.due,
                        late_by_s=done.late_by_s,
                    )
            report.restores += page.restores
            if page.resent:
                log.warning("schedule.restore_plans_resent", restores=page.resent)
            if not page.more or not page.restores:
                return
            after = page.restores[-1]

    async def _publish(self, job: DueJob, now: datetime) -> StartRun:
        command = start_run(job, now)
        message_id = f"{job.job_id}:{command.idempotency_key}"
        await self._bus.publish("commands", START_RUN, command, message_id=message_id)
        if command.late_by_s > self._late_after_s:
            log.warning(
                "schedule.fired_late", job_id=job.job_id, due=job.due, late_by_s=command.late_by_s
            )
        return command


async def tick_once(firing: Firing, token: int) -> TickReport | None:
    """A tick whose failure is logged and left to the next one (nothing is marked that
    was not published); None if it failed. ``LeaseLostError`` is the caller's."""
    try:
        return await firing.tick(token)
    except LeaseLostError:
        raise
    except EdgebackError as exc:
        log.warning("scheduler.tick_failed", code=exc.code, error=exc.message)
        return None
