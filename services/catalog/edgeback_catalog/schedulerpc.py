"""The catalog RPCs of the scheduler service (``catalog.leader.*``, ``catalog.schedule.*``):
its fenced lease and the due jobs. All need the ``service`` role."""

from __future__ import annotations

from edgeback_catalog.domain import JobId
from edgeback_catalog.gate import current_actor
from edgeback_catalog.routes import Route
from edgeback_catalog.service import Catalog
from edgeback_core.messages import catalog as m
from edgeback_core.messages import scheduling as s


class ScheduleRpc:
    def __init__(self, catalog: Catalog) -> None:
        self._leadership, self._due = catalog.leadership, catalog.due_jobs

    def routes(self) -> list[Route]:
        return [
            Route(s.LEADER_ACQUIRE, s.LeaderAcquire, self.leader_acquire),
            Route(s.LEADER_RELEASE, s.LeaderRelease, self.leader_release),
            Route(s.SCHEDULE_DUE, s.DueJobs, self.due),
            Route(s.SCHEDULE_MARK_FIRED, s.MarkFired, self.mark_fired),
        ]

    async def leader_acquire(self, req: s.LeaderAcquire) -> s.LeaderInfo:
        current_actor().require_service("taking a leadership lease")
        leader, granted = await self._leadership.acquire(req.role, req.holder, req.ttl_s)
        return s.LeaderInfo(
            role=leader.role,
            holder=leader.holder,
            token=leader.token,
            expires_at=leader.expires_at,
            granted=granted,
        )

    async def leader_release(self, req: s.LeaderRelease) -> m.Done:
        current_actor().require_service("releasing a leadership lease")
        return m.Done(ok=await self._leadership.release(req.role, req.holder, req.token))

    async def due(self, req: s.DueJobs) -> s.DueJobsReply:
        current_actor().require_service("listing due jobs")
        page, more = await self._due.due(
            req.before, after_due=req.after_due, after_id=req.after_id, limit=req.limit
        )
        jobs = [s.DueJob(job_id=d.job_id, due=d.due, revision=d.revision) for d in page]
        return s.DueJobsReply(jobs=jobs, more=more)

    async def mark_fired(self, req: s.MarkFired) -> s.MarkFiredReply:
        current_actor().require_service("marking schedules fired")
        fires = [(JobId(f.job_id), f.due) for f in req.fires]
        done = await self._due.mark_fired(req.holder, req.token, req.fired_at, fires)
        results = [
            s.FireResult(job_id=f.job_id, applied=f.applied, next_due=f.next_due) for f in done
        ]
        return s.MarkFiredReply(results=results)
