"""Composition root of the storage node: settings → bus and health → pools → HTTP data API."""

from __future__ import annotations

from edgeback_core.bus.port import Bus
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import serve
from edgeback_dedup import app
from edgeback_dedup.settings import DedupSettings

SERVICE = "dedup"


async def setup(runtime: ServiceRuntime, _bus: Bus, settings: DedupSettings) -> None:
    # closing the runner (last in, first out) stops the listener, then lets requests
    # in flight finish before the thread pool shuts down
    await runtime.stack.enter_async_context(app.serve(settings))


def main() -> None:
    serve(SERVICE, DedupSettings.load, setup)
