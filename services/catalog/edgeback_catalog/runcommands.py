"""The catalog's side of ``StartRun`` and of the run events it keeps.

``StartRun`` (queue ``catalog.run_starts``): create the run of (job, idempotency key)
with ``RunStarter``, then send ``PlanRun`` to the job's backup host (``run.<host_id>``)
under the run id as message id. A redelivered or repeated command finds its run: while
the run is still ``pending`` the same ``PlanRun`` (same id) is sent again, since the
first send may be what failed; once a worker took it nothing is sent. A job already
running or disabled answers ``RunSkipped`` (``job_busy``, ``job_disabled``) and the
command is done. A command that cannot be carried out (no such job: ``not_found``; a
malformed key: ``invalid_input``) also answers ``RunSkipped`` with that code, is logged
as ``run.start.refused`` and dead-lettered, so an operator finds it in the DLQ. A
``PlanRun`` no queue takes (no worker of that host ever connected) fails the run with
``backup_host_unreachable`` rather than leaving the job busy forever.

Run events (queue ``catalog.run_log``): each is kept once in the run log by its
message id (``runlog.py``), if its sender may send it: the catalog, or the backup host
of the event's run (``Gate.run_event``; anything else is audited and dead-lettered).
Restore events (queue ``catalog.restore_log``) likewise, from the restore's backup host.
"""

from __future__ import annotations

from typing import cast

import structlog

from edgeback_catalog.domain import Actor, JobId, Role
from edgeback_catalog.gate import Gate
from edgeback_catalog.runlog import run_of_event
from edgeback_catalog.runs import TransitionRequest
from edgeback_catalog.runstart import Started, StartRequest, run_id_for
from edgeback_catalog.runstate import RunState
from edgeback_catalog.service import Catalog
from edgeback_core.bus.port import Bus, Envelope
from edgeback_core.bus.topology import RUN_SKIPPED, run_routing_key
from edgeback_core.errors import (
    BackupHostUnreachableError,
    JobBusyError,
    JobDisabledError,
    PermanentError,
    UnroutableError,
)
from edgeback_core.messages import restores as rs
from edgeback_core.messages import runs as r

log = structlog.get_logger(__name__)


def starter(envelope: Envelope) -> Actor:
    """Who starts a run from ``StartRun``: the publisher's broker user (RabbitMQ checked
    it; only service users may publish ``run.command.start``), audited beside the
    command's ``requested_by``."""
    return Actor(name=envelope.user_id or "catalog", role=Role.SERVICE)


def skipped_message_id(command: r.StartRun) -> str:
    """Stable per (job, key): a redelivered command repeats the same ``RunSkipped``."""
    return f"skipped:{run_id_for(JobId(command.job_id), command.idempotency_key)}"


class RunMessages:
    def __init__(self, catalog: Catalog, bus: Bus, gate: Gate) -> None:
        self._c, self._bus, self._gate = catalog, bus, gate

    async def on_start_run(self, command: r.StartRun, envelope: Envelope) -> None:
        request = StartRequest(
            job_id=JobId(command.job_id),
            requested_by=command.requested_by,
            idempotency_key=command.idempotency_key,
            backup_type=command.backup_type,
        )
        try:
            started = await self._c.run_starter.start(starter(envelope), request)
        except (JobBusyError, JobDisabledError) as exc:
            await self._skipped(command, exc.code, [str(x) for x in exc.details.get("runs", [])])
            return
        except PermanentError as exc:
            log.error("run.start.refused", job_id=command.job_id, code=exc.code, error=exc.message)
            await self._skipped(command, exc.code, [])
            raise  # dead-lettered: a command that can never be carried out
        await self._plan(started, command.requested_by)

    async def on_run_event(self, event: r.RunEvent, envelope: Envelope) -> None:
        await self._gate.run_event(envelope, run_of_event(event), type(event).__name__)
        if not await self._c.run_log.record(event, envelope.message_id):
            log.debug("run_log.repeated", message_id=envelope.message_id)

    async def on_restore_event(self, event: rs.RestoreEvent, envelope: Envelope) -> None:
        await self._gate.restore_event(envelope, event.restore_id, type(event).__name__)
        if not await self._c.run_log.record(event, envelope.message_id):
            log.debug("restore_log.repeated", message_id=envelope.message_id)

    async def _skipped(self, command: r.StartRun, code: str, runs: list[str]) -> None:
        event = r.RunSkipped(
            job_id=command.job_id,
            requested_by=command.requested_by,
            idempotency_key=command.idempotency_key,
            code=code,
            active_run_ids=runs,
            at=self._c.clock(),
        )
        log.info("run.start.skipped", job_id=command.job_id, code=code, active_runs=runs)
        await self._bus.publish(
            "events", RUN_SKIPPED, event, message_id=skipped_message_id(command)
        )

    async def _plan(self, started: Started, requested_by: str) -> None:
        run = started.run
        if run.state is not RunState.PENDING:  # a worker took the plan: nothing to resend
            log.info("run.start.repeated", run_id=run.id, state=str(run.state))
            return
        plan = r.PlanRun(
            run_id=run.id,
            job_id=run.job_id,
            job_revision=started.job_revision,
            host_id=run.host_id,
            backup_type=cast(r.BackupType, started.backup_type),
            requested_by=requested_by,
        )
        try:
            await self._bus.publish(
                "commands", run_routing_key(run.host_id), plan, message_id=run.id
            )
        except UnroutableError:
            await self._unroutable(started)
            return
        log.info("run.planned", run_id=run.id, job_id=run.job_id, host_id=run.host_id)

    async def _unroutable(self, started: Started) -> None:
        run = started.run
        log.error("run.plan.unroutable", run_id=run.id, host_id=run.host_id)
        await self._c.runs.transition(
            TransitionRequest(
                run_id=run.id,
                target=RunState.FAILED,
                request_id=f"unroutable:{run.id}",
                reason=BackupHostUnreachableError.code,
            )
        )
