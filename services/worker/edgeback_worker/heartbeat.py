"""The backup host's heartbeat: how a worker registers its host and keeps it online.

The catalog creates an unknown host as *registered* (inactive) on its first heartbeat;
an admin then activates it. Online/offline follows the time of the last heartbeat, so
a publish that fails is logged and retried at the next tick, never fatal.
"""

from __future__ import annotations

import asyncio
import shutil
import socket

import structlog

from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import HOST_HEARTBEAT
from edgeback_core.errors import EdgebackError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages.catalog import HostHeartbeat

log = structlog.get_logger(__name__)

VERSION = "0.1.0"


def capacity_bytes(path: str) -> int:
    """Free bytes where the worker keeps its data (0 when the path does not exist)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


async def beat_forever(
    bus: Bus, *, host_id: BackupHostId, interval_s: float, data_dir: str
) -> None:
    """Publish a heartbeat now and every ``interval_s`` seconds until cancelled."""
    hostname = socket.gethostname()
    while True:
        beat = HostHeartbeat(
            host_id=host_id,
            hostname=hostname,
            version=VERSION,
            capacity_bytes=await asyncio.to_thread(capacity_bytes, data_dir),
        )
        try:
            await bus.publish("events", HOST_HEARTBEAT, beat)
        except EdgebackError as exc:
            log.warning("heartbeat.failed", host_id=host_id, code=exc.code)
        await asyncio.sleep(interval_s)
