"""Every routing key edgeback publishes events on or accepts commands from, with its
message type: the registry behind ``docs/asyncapi.json`` (X9).

Add a channel here when a new event or command goes on the bus; the AsyncAPI test then
asks for the document to be regenerated:
``python -m edgeback_core.messages.channels > docs/asyncapi.json``.
"""

from __future__ import annotations

from edgeback_core.bus import topology as t
from edgeback_core.messages import runs as r
from edgeback_core.messages.asyncapi import Channel, document, render
from edgeback_core.messages.catalog import HOST_HEARTBEAT, HostHeartbeat

VERSION = "1.0.0"
"""Version of the message contract (the AsyncAPI ``info.version``)."""

CHANNELS: tuple[Channel, ...] = (
    Channel(
        exchange="events",
        routing_key=HOST_HEARTBEAT,
        message=HostHeartbeat,
        summary="A backup host's worker is alive (every few seconds per worker).",
    ),
    Channel(
        exchange="commands",
        routing_key=t.START_RUN,
        message=r.StartRun,
        summary="Start a run of a job now; one run per (job, idempotency key).",
        action="send",
    ),
    Channel(
        exchange="events",
        routing_key=t.RUN_STARTED,
        message=r.RunStarted,
        summary="A run of a job was created.",
    ),
    Channel(
        exchange="events",
        routing_key=t.RUN_SKIPPED,
        message=r.RunSkipped,
        summary="A StartRun started nothing: the job is disabled or already running.",
    ),
    Channel(
        exchange="events",
        routing_key=t.RUN_PROGRESS,
        message=r.RunProgress,
        summary="Bytes done and total, rate and ETA of a run, at a bounded rate.",
    ),
    Channel(
        exchange="events",
        routing_key=t.VM_STARTED,
        message=r.VmStarted,
        summary="A worker started backing up one VM of a run (one attempt).",
    ),
    Channel(
        exchange="events",
        routing_key=t.VM_FINISHED,
        message=r.VmFinished,
        summary="One VM attempt succeeded or failed (with the error code).",
    ),
    Channel(
        exchange="events",
        routing_key=t.VM_SKIPPED,
        message=r.VmSkipped,
        summary="A VM was skipped before its snapshot (low free space, excluded).",
    ),
    Channel(
        exchange="events",
        routing_key=t.VM_REFUSED,
        message=r.VmRefused,
        summary="A VM cannot be backed up (not on Ceph, no guest agent, shelved).",
    ),
    Channel(
        exchange="events",
        routing_key=t.RUN_FINISHED,
        message=r.RunFinished,
        summary="A run ended: succeeded, partially succeeded, failed or cancelled.",
    ),
    Channel(
        exchange="events",
        routing_key=t.BACKUP_SET_CREATED,
        message=r.BackupSetCreated,
        summary="A VM's restore point was recorded.",
    ),
)


def asyncapi_json() -> str:
    return render(document(CHANNELS, version=VERSION))


if __name__ == "__main__":
    print(asyncapi_json(), end="")
