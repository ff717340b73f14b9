"""Composition root of the worker: bus, health, and the backup host's heartbeat."""

from __future__ import annotations

from edgeback_core.bus.port import Bus
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import serve
from edgeback_worker.heartbeat import beat_forever
from edgeback_worker.settings import WorkerSettings

SERVICE = "worker"


async def setup(runtime: ServiceRuntime, bus: Bus, settings: WorkerSettings) -> None:
    beat = beat_forever(
        bus,
        host_id=settings.resolved_host_id,
        interval_s=settings.heartbeat_s,
        data_dir=settings.data_dir,
    )
    runtime.start_task(beat, name="heartbeat")


def main() -> None:
    serve(SERVICE, WorkerSettings.load, setup)
