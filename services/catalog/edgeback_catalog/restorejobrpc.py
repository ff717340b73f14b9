"""The catalog's restore job RPCs (``catalog.restore_job.*``): wire requests to the
``RestoreJobs`` use cases (users through the API only)."""

from __future__ import annotations

from edgeback_catalog.gate import current_actor
from edgeback_catalog.restoredocs import restore_info
from edgeback_catalog.restorejobdocs import restore_job_info
from edgeback_catalog.restorejobs import RestoreJobs
from edgeback_catalog.routes import Route
from edgeback_catalog.service import Catalog
from edgeback_core.messages import restorejobs as rj


class RestoreJobRpc:
    def __init__(self, catalog: Catalog) -> None:
        self._jobs = RestoreJobs(catalog.db, catalog.audit, catalog.restores, catalog.clock)

    def routes(self) -> list[Route]:
        return [
            Route(rj.RESTORE_JOB_CREATE, rj.RestoreJobCreate, self.create),
            Route(rj.RESTORE_JOB_GET, rj.RestoreJobGet, self.get),
            Route(rj.RESTORE_JOB_LIST, rj.RestoreJobList, self.list),
            Route(rj.RESTORE_JOB_UPDATE, rj.RestoreJobUpdate, self.update),
            Route(rj.RESTORE_JOB_CLONE, rj.RestoreJobClone, self.clone),
            Route(rj.RESTORE_JOB_DELETE, rj.RestoreJobDelete, self.delete),
            Route(rj.RESTORE_JOB_SET_ENABLED, rj.RestoreJobSetEnabled, self.set_enabled),
            Route(rj.RESTORE_JOB_START, rj.RestoreJobStart, self.start),
            Route(rj.RESTORE_JOB_STOP, rj.RestoreJobStop, self.stop),
        ]

    async def create(self, req: rj.RestoreJobCreate) -> rj.RestoreJobStarted:
        job, created = await self._jobs.create(current_actor(), req.spec)
        return rj.RestoreJobStarted(
            job=restore_job_info(job),
            restore=restore_info(created.restore),
            verification_code=created.code,
        )

    async def get(self, req: rj.RestoreJobGet) -> rj.RestoreJobDetail:
        actor = current_actor()
        job = await self._jobs.get(actor, req.job_id)
        restores = await self._jobs.restores_of(actor, job.id)
        return rj.RestoreJobDetail(
            job=restore_job_info(job), restores=[restore_info(x) for x in restores]
        )

    async def list(self, req: rj.RestoreJobList) -> rj.RestoreJobListReply:
        jobs, after = await self._jobs.page(current_actor(), req)
        return rj.RestoreJobListReply(jobs=[restore_job_info(j) for j in jobs], next_after=after)

    async def update(self, req: rj.RestoreJobUpdate) -> rj.RestoreJobChanged:
        actor = current_actor()
        job, cancelled = await self._jobs.update(actor, req.job_id, req.revision, req.spec)
        return rj.RestoreJobChanged(job=restore_job_info(job), cancelled=cancelled)

    async def clone(self, req: rj.RestoreJobClone) -> rj.RestoreJobInfo:
        return restore_job_info(await self._jobs.clone(current_actor(), req.job_id, req.name))

    async def delete(self, req: rj.RestoreJobDelete) -> rj.RestoreJobChanged:
        job, cancelled = await self._jobs.delete(current_actor(), req.job_id)
        return rj.RestoreJobChanged(job=restore_job_info(job), cancelled=cancelled)

    async def set_enabled(self, req: rj.RestoreJobSetEnabled) -> rj.RestoreJobInfo:
        actor = current_actor()
        return restore_job_info(await self._jobs.set_enabled(actor, req.job_id, req.enabled))

    async def start(self, req: rj.RestoreJobStart) -> rj.RestoreJobStarted:
        job, created, superseded = await self._jobs.start(current_actor(), req.job_id)
        return rj.RestoreJobStarted(
            job=restore_job_info(job),
            restore=restore_info(created.restore),
            verification_code=created.code,
            cancelled=superseded,
        )

    async def stop(self, req: rj.RestoreJobStop) -> rj.RestoreJobStopped:
        stopped = await self._jobs.stop(current_actor(), req.job_id)
        return rj.RestoreJobStopped(restores=[restore_info(x) for x in stopped])
