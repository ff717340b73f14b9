"""The catalog's job RPCs (``catalog.job.*``): wire requests to the ``Jobs`` use cases."""

from __future__ import annotations

from edgeback_catalog import wire
from edgeback_catalog.domain import JobId
from edgeback_catalog.gate import current_actor
from edgeback_catalog.listfilters import job_filters
from edgeback_catalog.routes import Route
from edgeback_catalog.service import Catalog
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import jobs as j


class JobRpc:
    def __init__(self, catalog: Catalog) -> None:
        self._jobs, self._cancels = catalog.jobs, catalog.run_cancels

    def routes(self) -> list[Route]:
        return [
            Route(j.JOB_CREATE, j.JobCreate, self.create),
            Route(j.JOB_GET, j.JobGet, self.get),
            Route(j.JOB_LIST, j.JobList, self.list),
            Route(j.JOB_UPDATE, j.JobUpdate, self.update),
            Route(j.JOB_CLONE, j.JobClone, self.clone),
            Route(j.JOB_DELETE, j.JobDelete, self.delete),
            Route(j.JOB_SET_ENABLED, j.JobSetEnabled, self.set_enabled),
            Route(j.JOB_STOP, j.JobStop, self.stop),
        ]

    async def create(self, req: j.JobCreate) -> j.JobInfo:
        actor = current_actor()
        job = await self._jobs.create(actor, req.spec, enabled=req.enabled, groups=req.groups)
        return wire.job_info(job)

    async def get(self, req: j.JobGet) -> j.JobInfo:
        return wire.job_info(await self._jobs.get(current_actor(), JobId(req.job_id)))

    async def list(self, req: j.JobList) -> j.JobListReply:
        host = None if req.host_id is None else BackupHostId(req.host_id)
        match = job_filters(name=req.name, enabled=req.enabled, platform_id=req.platform_id)
        jobs, after = await self._jobs.list(
            current_actor(), host_id=host, after=req.after, limit=req.limit, match=match
        )
        return j.JobListReply(jobs=[wire.job_info(job) for job in jobs], next_after=after)

    async def update(self, req: j.JobUpdate) -> j.JobInfo:
        actor, job_id = current_actor(), JobId(req.job_id)
        return wire.job_info(await self._jobs.update(actor, job_id, req.revision, req.spec))

    async def clone(self, req: j.JobClone) -> j.JobInfo:
        actor, job_id = current_actor(), JobId(req.job_id)
        return wire.job_info(await self._jobs.clone(actor, job_id, req.name))

    async def delete(self, req: j.JobDelete) -> m.Done:
        await self._jobs.delete(current_actor(), JobId(req.job_id))
        return m.Done()

    async def set_enabled(self, req: j.JobSetEnabled) -> j.JobInfo:
        actor, job_id = current_actor(), JobId(req.job_id)
        return wire.job_info(await self._jobs.set_enabled(actor, job_id, req.enabled))

    async def stop(self, req: j.JobStop) -> j.JobStopped:
        stopped = await self._cancels.stop_job(current_actor(), JobId(req.job_id), req.reason)
        return j.JobStopped(runs=[wire.run_info(run) for run in stopped])
