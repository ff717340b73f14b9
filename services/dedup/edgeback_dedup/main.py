"""Composition root of the storage node: settings → pools → HTTP data API, under run_service."""

from __future__ import annotations

import asyncio
import sys

from edgeback_core import logging as edgeback_logging
from edgeback_core.lifecycle import ServiceRuntime, run_service
from edgeback_core.settings import process_environ
from edgeback_dedup.app import serve
from edgeback_dedup.settings import DedupSettings


def main() -> None:
    settings = DedupSettings.load(process_environ())
    edgeback_logging.configure(settings.log_level, service="dedup")

    async def setup(runtime: ServiceRuntime) -> None:
        # closing the runner (last in, first out) stops the listener, then lets requests
        # in flight finish before the thread pool shuts down
        await runtime.stack.enter_async_context(serve(settings))

    sys.exit(asyncio.run(run_service("dedup", setup)))
