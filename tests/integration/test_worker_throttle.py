"""The job's backup speed (disk reads) and transfer speed (uploads to the node),
measured: a 24 MiB disk of random data (so what is uploaded is what is read) backed up
by a run limited to 4 MiB/s. After the limiter's burst (one second's worth, at least
4 MiB, which a transfer starts with), the rate the run achieved is within 10 % of it."""

from __future__ import annotations

import os
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
import pytest
from tests.support.emulator.state import EmulatorState
from tests.support.run_world import (
    POOL,
    Seeding,
    add_platform,
    create_job,
    host_workers,
    run_job,
    serve_world,
)

from edgeback_blocks.rbd import RbdPool
from edgeback_core.bus.topology import Topology
from edgeback_core.messages import jobs as j

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
RATE_MIB = 4
BURST = 4 * MIB


@pytest.mark.parametrize("limit", ["backup_speed", "transfer_speed"])
async def test_a_runs_rate_holds_within_ten_percent_of_its_speed_limit(
    limit: str, *, tmp_path: Path, amqp_url: str, mongo_url: str, ceph_conf: str, pool: RbdPool
) -> None:
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    async with AsyncExitStack() as stack:
        world = await serve_world(
            stack, tmp_path, topology, amqp_url=amqp_url, mongo_url=mongo_url,
            ceph_conf=ceph_conf, vms=1, disk_mib="24",
            seeding=Seeding(fill=1.0, disks="1", eligible=True),
        )  # fmt: skip
        await _randomize(world.emulator.state(), pool)  # incompressible: uploaded = read
        platform_id = await add_platform(world)
        window = [j.SpeedWindow(rate=RATE_MIB, unit="MiB/s")]
        options = msgspec.structs.replace(
            j.JobOptions(vm_retries=0, parallel_vms=1, disks_per_vm=1, streams_per_disk=4),
            **{limit: window},
        )
        job = await create_job(world, platform_id, name="speed", pool=POOL, options=options)
        async with host_workers(world, 1):
            detail = await run_job(world, job, "speed", "full")
    assert detail.run.state == "succeeded", detail
    stats = detail.stats
    assert stats.bytes_read == 24 * MIB, stats
    rate = (stats.bytes_read - BURST) / stats.duration_s
    print(f"\n{limit}: {stats.bytes_read / MIB:.0f} MiB in {stats.duration_s:.2f}s, "
          f"{rate / MIB:.2f} MiB/s after the burst, limit {RATE_MIB} MiB/s")  # fmt: skip
    assert abs(rate - RATE_MIB * MIB) <= 0.1 * RATE_MIB * MIB


async def _randomize(state: EmulatorState, pool: RbdPool) -> None:
    (vm,) = state.vms
    (disk,) = vm.disks
    name = state.ceph.image_name(vm.id, disk)
    assert name is not None
    async with pool.open_image(name, read_only=False) as image:
        for offset in range(0, 24 * MIB, 4 * MIB):
            await image.write(offset, os.urandom(4 * MIB))
