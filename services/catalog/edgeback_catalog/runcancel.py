"""Cancelling a run, or every active run of a job (stopping the job): whoever sees
the job may ask, every request is audited.

A pending run (its ``PlanRun`` not yet taken) is cancelled at once: a worker that then
takes the plan finds it ended and its first transition fails. A queued or running run
becomes ``cancelling``; its workers see that state in the catalog's answers, stop, and
finish their VMs, and the last finish ends the run ``cancelled`` (``succeeded`` if every
VM had already succeeded). Either way the catalog announces ``RunFinished``.
"""

from __future__ import annotations

from edgeback_catalog.access import AuditLog
from edgeback_catalog.domain import Actor, JobId, Run, RunId
from edgeback_catalog.jobs import Jobs
from edgeback_catalog.runs import Runs, TransitionOutcome, TransitionRequest
from edgeback_catalog.runstate import RunState
from edgeback_core.errors import InvalidTransitionError

STOPPABLE = frozenset({RunState.PENDING, RunState.QUEUED, RunState.RUNNING})
"""What stopping a job cancels (a ``cancelling`` run is stopping already)."""


def cancel_request_id(run_id: RunId) -> str:
    return f"cancel:{run_id}"


class RunCancels:
    def __init__(self, runs: Runs, jobs: Jobs, audit: AuditLog) -> None:
        self._runs, self._jobs, self._audit = runs, jobs, audit

    async def cancel(self, actor: Actor, run_id: RunId, reason: str) -> TransitionOutcome:
        """``applied=false`` for a repeated cancel; ``invalid_transition`` once ended."""
        run = await self._runs.get(run_id)
        if not actor.sees_everything:
            await self._jobs.get(actor, run.job_id)  # not_found unless the job is visible
        target = RunState.CANCELLED if run.state is RunState.PENDING else RunState.CANCELLING
        request = TransitionRequest(
            run_id=run_id,
            target=target,
            request_id=cancel_request_id(run_id),
            reason=reason[:500] or f"cancel requested by {actor.name}",
        )
        outcome = await self._runs.transition(request)
        if outcome.applied:
            details = {"job_id": run.job_id, "reason": request.reason, "state": str(target)}
            await self._audit.record(actor, "run.cancel_requested", f"run/{run_id}", details)
        return outcome

    async def stop_job(self, actor: Actor, job_id: JobId, reason: str) -> list[Run]:
        """Cancel each active run of the job as :meth:`cancel` does (each audited); the
        runs it stopped, as they are now. One that ended meanwhile is left out."""
        await self._jobs.get(actor, job_id)  # not_found unless the job is visible
        stopped = []
        for run in await self._runs.active_of(job_id, STOPPABLE):
            try:
                outcome = await self.cancel(actor, run.id, reason)
            except InvalidTransitionError:
                continue  # it ended between the read and the cancel
            stopped.append(outcome.run)
        details = {"runs": [run.id for run in stopped]}
        await self._audit.record(actor, "job.stopped", f"job/{job_id}", details)
        return stopped
