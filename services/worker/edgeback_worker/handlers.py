"""The worker's RPCs, served under names that carry this backup host's id.

The catalog calls them before it stores a platform or a Ceph storage, and to list a
platform's content: only a worker of the chosen backup host reaches that network.
Several workers of one host share each name (the broker hands a call to one of them).
"""

from __future__ import annotations

from edgeback_core.bus.port import Bus, ConsumerHandle
from edgeback_core.messages import worker as w
from edgeback_worker.platform_checks import PlatformProbe
from edgeback_worker.settings import WorkerSettings
from edgeback_worker.storage_check import StorageProbe


async def serve_worker_rpcs(bus: Bus, settings: WorkerSettings) -> list[ConsumerHandle]:
    """Serve ``worker.<host_id>.platform.check|inventory`` and ``.storage.check``."""
    host = settings.resolved_host_id
    platform = PlatformProbe(
        host_id=host,
        retries=settings.check_retries,
        connect_timeout_s=settings.platform_connect_timeout_s,
        timeout_s=settings.platform_timeout_s,
    )
    storage = StorageProbe(host_id=host, connect_timeout_s=settings.ceph_connect_timeout_s)
    return [
        await bus.serve_rpc(w.platform_check_rpc(host), platform.check, w.PlatformCheck),
        await bus.serve_rpc(
            w.platform_inventory_rpc(host), platform.inventory, w.PlatformInventoryRequest
        ),
        await bus.serve_rpc(w.storage_check_rpc(host), storage.check, w.StorageCheck),
    ]
