"""Composition root of the storage node: settings → health → pools → HTTP data API.

The node does not use the bus: it needs no broker to start or to serve.
"""

from __future__ import annotations

import asyncio
import os

from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import serve
from edgeback_dedup import app
from edgeback_dedup.settings import DedupSettings

SERVICE = "dedup"


async def setup(runtime: ServiceRuntime, settings: DedupSettings) -> None:
    # closing the runner (last in, first out) stops the listener, then lets requests
    # in flight finish before the thread pool shuts down
    await runtime.stack.enter_async_context(app.serve(settings))

    async def data_dir_usable() -> bool:
        # an unmounted or read-only pool filesystem fails this, not the listener
        access = os.R_OK | os.W_OK | os.X_OK
        return await asyncio.to_thread(os.access, settings.data_path, access)

    runtime.health_checks["data_dir"] = data_dir_usable


def main() -> None:
    serve(SERVICE, DedupSettings.load, setup, bus=False)
