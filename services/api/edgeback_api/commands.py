"""Handlers that publish commands: start a run of a job now.

``StartRun`` is one command whoever sends it (API, scheduler, an integration); its
``idempotency_key`` is the request's ``Idempotency-Key`` header (a client retrying
after a lost answer sends the same one and gets the same run), or a new uuid.
"""

from __future__ import annotations

import uuid

from edgeback_api.routing import Call
from edgeback_api.wire import RunRequested, StartBody
from edgeback_core.bus.topology import START_RUN
from edgeback_core.errors import InvalidInputError
from edgeback_core.ids import started_run_id
from edgeback_core.messages import jobs as j
from edgeback_core.messages.runs import StartRun

IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key(given: str | None) -> str:
    if given is None:
        return uuid.uuid4().hex
    if not 1 <= len(given) <= 128 or not given.isprintable():
        raise InvalidInputError(
            f"{IDEMPOTENCY_HEADER} has 1 to 128 printable characters", field=IDEMPOTENCY_HEADER
        )
    return given


async def start_run(call: Call) -> RunRequested:
    body = call.request_as(StartBody)
    job_id = call.params["job_id"]
    # the job must exist and be visible to the caller before anything is published
    await call.api.call(j.JOB_GET, j.JobGet(actor=call.actor, job_id=job_id), j.JobInfo)
    key = idempotency_key(call.headers.get(IDEMPOTENCY_HEADER))
    command = StartRun(
        job_id=job_id,
        requested_by=call.user_name,
        idempotency_key=key,
        backup_type=body.backup_type,
    )
    await call.api.bus.publish("commands", START_RUN, command, message_id=f"start:{job_id}:{key}")
    return RunRequested(job_id=job_id, idempotency_key=key, run_id=started_run_id(job_id, key))
