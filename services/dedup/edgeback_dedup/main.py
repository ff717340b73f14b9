"""Composition root of the storage node: settings → bus and health → pools → HTTP data API."""

from __future__ import annotations

from edgeback_core.bus.port import Bus
from edgeback_core.errors import ConfigError
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import CommonSettings, exit_on_config_error, serve
from edgeback_core.settings import process_environ
from edgeback_dedup import app
from edgeback_dedup.settings import DedupSettings

SERVICE = "dedup"


def main() -> None:
    try:
        settings = DedupSettings.load(process_environ())
    except ConfigError as exc:
        exit_on_config_error(SERVICE, exc)

    async def setup(runtime: ServiceRuntime, _bus: Bus, _common: CommonSettings) -> None:
        # closing the runner (last in, first out) stops the listener, then lets requests
        # in flight finish before the thread pool shuts down
        await runtime.stack.enter_async_context(app.serve(settings))

    serve(SERVICE, setup)
