"""Every routing key edgeback publishes events on or accepts commands from, with its
message type: the registry behind ``docs/asyncapi.json`` (X9).

Add a channel here when a new event or command goes on the bus; the AsyncAPI test then
asks for the document to be regenerated:
``python -m edgeback_core.messages.channels > docs/asyncapi.json``.
"""

from __future__ import annotations

from edgeback_core.bus import topology as t
from edgeback_core.messages import restores as rs
from edgeback_core.messages import retention as rt
from edgeback_core.messages import runs as r
from edgeback_core.messages.asyncapi import Channel, document, render
from edgeback_core.messages.catalog import HostHeartbeat

VERSION = "1.0.0"
"""Version of the message contract (the AsyncAPI ``info.version``)."""

CHANNELS: tuple[Channel, ...] = (
    Channel(
        exchange="events",
        routing_key=t.HOST_HEARTBEAT,
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
    *(
        Channel(exchange="events", routing_key=key, message=message, summary=summary)
        for key, message, summary in (
            (t.RUN_STARTED, r.RunStarted, "A run of a job was created."),
            (
                t.RUN_SKIPPED,
                r.RunSkipped,
                "A StartRun started nothing: the job is disabled or already running.",
            ),
            (
                t.RUN_PROGRESS,
                r.RunProgress,
                "Bytes done and total, rate and ETA of a run, at a bounded rate.",
            ),
            (t.VM_STARTED, r.VmStarted, "A worker started one attempt at one VM of a run."),
            (t.VM_FINISHED, r.VmFinished, "One VM attempt succeeded or failed (error code)."),
            (t.VM_SKIPPED, r.VmSkipped, "A VM was skipped before its snapshot (low space)."),
            (t.VM_REFUSED, r.VmRefused, "A VM cannot be backed up (not on Ceph, agent, shelved)."),
            (t.RUN_FINISHED, r.RunFinished, "A run ended: its outcome and totals."),
            (t.BACKUP_SET_CREATED, r.BackupSetCreated, "A VM's restore point was recorded."),
            (t.RESTORE_STARTED, rs.RestoreStarted, "A worker planned a restore's VMs."),
            (
                t.RESTORE_VM_STARTED,
                rs.RestoreVmStarted,
                "A worker started one attempt at one VM of a restore.",
            ),
            (
                t.RESTORE_PROGRESS,
                rs.RestoreProgress,
                "Bytes done and total, rate and ETA of one disk of a restore, at a bounded rate.",
            ),
            (
                t.RESTORE_VM_FINISHED,
                rs.RestoreVmFinished,
                "One VM of a restore succeeded (per-disk figures), failed or was refused.",
            ),
            (t.RESTORE_FINISHED, rs.RestoreFinished, "A restore ended: its outcome and counts."),
            (
                t.BACKUP_SET_REMOVED,
                rt.BackupSetRemoved,
                "Retention removed a restore point (its manifests are gone from the node).",
            ),
            (
                t.POOL_COLLECTED,
                rt.PoolCollected,
                "Maintenance garbage-collected a pool after removing restore points.",
            ),
        )
    ),
)


def asyncapi_json() -> str:
    return render(document(CHANNELS, version=VERSION))


if __name__ == "__main__":
    print(asyncapi_json(), end="")
