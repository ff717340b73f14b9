"""Composition root of the worker: bus, health, the backup host's heartbeat, its
check/inventory RPCs and the backup runs of its host."""

from __future__ import annotations

from edgeback_core.bus.port import Bus
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import serve
from edgeback_worker.handlers import serve_runs, serve_worker_rpcs
from edgeback_worker.heartbeat import beat_forever
from edgeback_worker.settings import WorkerSettings

SERVICE = "worker"


async def setup(runtime: ServiceRuntime, bus: Bus, settings: WorkerSettings) -> None:
    for handle in await serve_worker_rpcs(bus, settings):
        runtime.on_stop_intake(handle.stop)
    runs = await serve_runs(bus, settings)
    runtime.on_stop_intake(runs.stop)
    beat = beat_forever(
        bus,
        host_id=settings.resolved_host_id,
        interval_s=settings.heartbeat_s,
        data_dir=settings.data_dir,
    )
    runtime.start_task(beat, name="heartbeat")


def main() -> None:
    # a backup host's broker user may not declare (nor delete) the shared exchanges
    serve(SERVICE, WorkerSettings.load, setup, declare_exchanges=False)
