"""The scheduler's calls to the catalog: its lease, due jobs, marking fires, due
restores, retention.

One thin client over the bus, acting as the ``service`` role under the instance's name.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import msgspec

from edgeback_core.bus.port import Bus
from edgeback_core.messages import catalog as m
from edgeback_core.messages import retention as rt
from edgeback_core.messages import scheduling as s

R = TypeVar("R", bound=msgspec.Struct)


class CatalogClient:
    def __init__(self, bus: Bus, holder: str, *, timeout_s: float) -> None:
        self._bus, self.holder, self._timeout = bus, holder, timeout_s
        self._actor = m.ActorRef()  # the catalog knows the scheduler by its broker user

    async def _call(self, name: str, request: msgspec.Struct, reply: type[R]) -> R:
        return await self._bus.call(name, request, reply, timeout=self._timeout)

    async def acquire(self, ttl_s: float) -> s.LeaderInfo:
        req = s.LeaderAcquire(
            actor=self._actor, role=s.SCHEDULER_ROLE, holder=self.holder, ttl_s=ttl_s
        )
        return await self._call(s.LEADER_ACQUIRE, req, s.LeaderInfo)

    async def release(self, token: int) -> bool:
        req = s.LeaderRelease(
            actor=self._actor, role=s.SCHEDULER_ROLE, holder=self.holder, token=token
        )
        return (await self._call(s.LEADER_RELEASE, req, m.Done)).ok

    async def due(self, before: datetime, after: s.DueJob | None, limit: int) -> s.DueJobsReply:
        req = s.DueJobs(
            actor=self._actor,
            before=before,
            after_due=None if after is None else after.due,
            after_id="" if after is None else after.job_id,
            limit=limit,
        )
        return await self._call(s.SCHEDULE_DUE, req, s.DueJobsReply)

    async def mark_fired(
        self, token: int, fired_at: datetime, jobs: list[s.DueJob]
    ) -> s.MarkFiredReply:
        fires = [s.Fire(job_id=job.job_id, due=job.due) for job in jobs]
        req = s.MarkFired(
            actor=self._actor, holder=self.holder, token=token, fired_at=fired_at, fires=fires
        )
        return await self._call(s.SCHEDULE_MARK_FIRED, req, s.MarkFiredReply)

    async def queue_restores(
        self,
        token: int,
        before: datetime,
        *,
        late_limit_s: float,
        after: s.DueRestore | None,
        limit: int,
    ) -> s.QueueDueRestoresReply:
        req = s.QueueDueRestores(
            actor=self._actor,
            holder=self.holder,
            token=token,
            before=before,
            late_limit_s=late_limit_s,
            after_due=None if after is None else after.due,
            after_id="" if after is None else after.restore_id,
            limit=limit,
        )
        return await self._call(s.SCHEDULE_QUEUE_RESTORES, req, s.QueueDueRestoresReply)

    async def retention_jobs(self, after: str, limit: int) -> rt.RetentionJobsReply:
        req = rt.RetentionJobs(actor=self._actor, after=after, limit=limit)
        return await self._call(rt.RETENTION_JOBS, req, rt.RetentionJobsReply)

    async def retention_plan(self, token: int, job_id: str) -> rt.RetentionPlanReply:
        req = rt.RetentionPlan(actor=self._actor, job_id=job_id, holder=self.holder, token=token)
        return await self._call(rt.RETENTION_PLAN, req, rt.RetentionPlanReply)

    async def retention_confirm(self, token: int, set_ids: list[str]) -> rt.RetentionConfirmReply:
        req = rt.RetentionConfirm(
            actor=self._actor, holder=self.holder, token=token, backup_set_ids=set_ids
        )
        return await self._call(rt.RETENTION_CONFIRM, req, rt.RetentionConfirmReply)
