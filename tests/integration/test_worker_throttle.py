"""The job's backup speed, measured: a 24 MiB disk (every chunk written) read by a run
limited to 4 MiB/s. After the limiter's burst (one second's worth, at least 4 MiB,
which a transfer starts with), the rate the run achieved is within 10 % of the limit.
The transfer speed is the same limiter on the upload path (``runcontext.throttles``)."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from tests.support.run_world import (
    POOL,
    Seeding,
    add_platform,
    create_job,
    host_workers,
    run_job,
    serve_world,
)

from edgeback_core.bus.topology import Topology
from edgeback_core.messages import jobs as j

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
RATE_MIB = 4
BURST = 4 * MIB


async def test_a_runs_read_rate_holds_within_ten_percent_of_its_backup_speed(
    tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str
) -> None:
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    async with AsyncExitStack() as stack:
        world = await serve_world(
            stack, tmp_path, topology, amqp_url=amqp_url, mongo_url=mongo_url,
            ceph_conf=ceph_conf, vms=1, disk_mib="24",
            seeding=Seeding(fill=1.0, disks="1", eligible=True),
        )  # fmt: skip
        platform_id = await add_platform(world)
        limit = [j.SpeedWindow(rate=RATE_MIB, unit="MiB/s")]
        options = j.JobOptions(
            vm_retries=0, parallel_vms=1, disks_per_vm=1, streams_per_disk=4, backup_speed=limit
        )
        job = await create_job(world, platform_id, name="speed", pool=POOL, options=options)
        async with host_workers(world, 1):
            detail = await run_job(world, job, "speed", "full")
    assert detail.run.state == "succeeded", detail
    stats = detail.stats
    assert stats.bytes_read == 24 * MIB, stats
    rate = (stats.bytes_read - BURST) / stats.duration_s
    print(f"\nread {stats.bytes_read / MIB:.0f} MiB in {stats.duration_s:.2f}s: "
          f"{rate / MIB:.2f} MiB/s after the burst, limit {RATE_MIB} MiB/s")  # fmt: skip
    assert abs(rate - RATE_MIB * MIB) <= 0.1 * RATE_MIB * MIB
