"""Composition root of the worker: bus, health, and the backup host's heartbeat."""

from __future__ import annotations

from edgeback_core.bus.port import Bus
from edgeback_core.errors import ConfigError
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import CommonSettings, exit_on_config_error, serve
from edgeback_core.settings import process_environ
from edgeback_worker.heartbeat import beat_forever
from edgeback_worker.settings import WorkerSettings

SERVICE = "worker"


def main() -> None:
    try:
        settings = WorkerSettings.load(process_environ())
    except ConfigError as exc:
        exit_on_config_error(SERVICE, exc)

    async def setup(runtime: ServiceRuntime, bus: Bus, _common: CommonSettings) -> None:
        beat = beat_forever(
            bus,
            host_id=settings.resolved_host_id,
            interval_s=settings.heartbeat_s,
            data_dir=settings.data_dir,
        )
        runtime.start_task(beat, name="heartbeat")

    serve(SERVICE, setup)
