"""Composition root of the scheduler: settings → clock → catalog client → lease → loop."""

from __future__ import annotations

import os
import socket
import uuid

from edgeback_core.bus.port import Bus
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import serve
from edgeback_scheduler.catalog import CatalogClient
from edgeback_scheduler.clock import make_clock
from edgeback_scheduler.firing import Firing
from edgeback_scheduler.leader import LeaderLease
from edgeback_scheduler.maintenance import Maintenance, MaintenanceLoop
from edgeback_scheduler.nodes import NodeTokens
from edgeback_scheduler.scheduler import Scheduler
from edgeback_scheduler.settings import SchedulerSettings

SERVICE = "scheduler"


async def setup(runtime: ServiceRuntime, bus: Bus, settings: SchedulerSettings) -> None:
    clock = make_clock(
        settings.test_clock_origin, settings.test_clock_offset_s, settings.test_clock_speed
    )
    # unique per process: a restarted instance is a new holder, whose takeover is fenced
    holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    catalog = CatalogClient(bus, holder, timeout_s=settings.rpc_timeout_s)
    firing = Firing(
        bus,
        catalog,
        clock,
        page_size=settings.page_size,
        late_after_s=settings.late_after_s,
        restore_late_limit_s=settings.restore_late_limit_s,
    )
    lease = LeaderLease(catalog, ttl_s=settings.lease_ttl_s)
    scheduler = Scheduler(lease, firing, tick_s=settings.tick_s)
    nodes = NodeTokens.load(settings.node_tokens_file, settings.node_ca_file)
    maintenance = MaintenanceLoop(
        Maintenance(bus, catalog, nodes, clock),
        lease,
        interval_s=settings.maintenance_interval_s,
        poll_s=settings.tick_s,
    )
    upkeep = runtime.start_task(
        maintenance.run(runtime.stopping, runtime.inflight), name="maintenance"
    )
    task = runtime.start_task(scheduler.run(runtime.stopping, runtime.inflight), name="scheduler")

    async def stop() -> None:
        await upkeep  # a pass in progress ends first (fenced anyway once the lease goes)
        await task  # the loop sees `stopping`, finishes its tick and releases the lease

    runtime.on_stop_intake(stop)


def main() -> None:
    serve(SERVICE, SchedulerSettings.load, setup)
