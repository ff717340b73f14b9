"""Helpers of the restore-run tests: read and scribble RBD images, run a restore to its
end through the catalog as the API does (create, start with its verification code,
poll), and the restore's event types as a consumer of the events exchange sees them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from tests.bench.images import image_sha256
from tests.support.backup_host import ADMIN, CatalogCall
from tests.support.event_tap import EventTap
from tests.support.run_world import RunWorld, Seeding, host_workers, serve_world

from edgeback_blocks.rbd import RbdPool
from edgeback_core.bus.topology import Topology
from edgeback_core.messages import restores as r
from edgeback_platform.models import Vm

MIB = 1 << 20
ENDED = frozenset({"succeeded", "failed", "partially_succeeded", "cancelled", "expired"})


@contextlib.asynccontextmanager
async def restore_world(
    tmp_path: Path, urls: tuple[str, str, str], *, vms: int, worker_env: Mapping[str, str]
) -> AsyncIterator[RunWorld]:
    """A run world (``urls``: AMQP, catalog DB, Ceph conf) of ``vms`` VMs with two 12 MiB
    disks half filled, every VM eligible, and one worker process of the host."""
    amqp_url, mongo_url, ceph_conf = urls
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    async with contextlib.AsyncExitStack() as stack:
        world = await serve_world(
            stack, tmp_path, topology, amqp_url=amqp_url, mongo_url=mongo_url,
            ceph_conf=ceph_conf, vms=vms, disk_mib="12",
            seeding=Seeding(disks="2", eligible=True, fill=0.5),
        )  # fmt: skip
        await stack.enter_async_context(host_workers(world, 1, dict(worker_env)))
        yield world


async def read_digest(rbd: RbdPool, image: str, snapshot: str | None = None) -> str:
    """SHA-256 of the whole image (or snapshot), read 64 MiB at a time."""
    async with rbd.open_image(image, snapshot=snapshot) as opened:
        return await image_sha256(opened, await opened.size())


async def scribble(rbd: RbdPool, images: list[str], offset: int) -> None:
    for name in images:
        async with rbd.open_image(name, read_only=False) as image:
            await image.write(offset, os.urandom(MIB))


def vm_images(world: RunWorld, vm: Vm) -> list[str]:
    ceph = world.emulator.state().ceph
    return [ceph.image_name(vm.id, disk) or "" for disk in vm.disks]


async def start_restore(call: CatalogCall, spec: r.RestoreSpec) -> str:
    """Create the restore and start it with its verification code, as the API does; its id."""
    created = await call(
        r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=spec), r.RestoreCreated
    )
    assert created.restore.state == "pending_verification", created.restore
    rid, code = created.restore.id, created.verification_code
    start = r.RestoreStart(actor=ADMIN, restore_id=rid, verification_code=code)
    started = await call(r.RESTORE_START, start, r.RestoreInfo)
    assert started.state in ("queued", "scheduled"), started
    return rid


async def restore_ended(
    call: CatalogCall, rid: str, *, within_s: float = 90, poll_s: float = 0.3
) -> r.RestoreInfo:
    """The restore once it ended (with its VMs and their figures)."""
    get = r.RestoreGet(actor=ADMIN, restore_id=rid)
    async with asyncio.timeout(within_s):
        while True:
            info = await call(r.RESTORE_GET, get, r.RestoreInfo)
            if info.state in ENDED:
                return info
            await asyncio.sleep(poll_s)


async def restore_and_wait(
    world: RunWorld, spec: r.RestoreSpec, within_s: float = 60, poll_s: float = 0.3
) -> r.RestoreInfo:
    """Create the restore, start it with its code, and wait for its end."""
    rid = await start_restore(world.call, spec)
    return await restore_ended(world.call, rid, within_s=within_s, poll_s=poll_s)


async def restore_events(tap: EventTap, rid: str) -> list[str]:
    """The restore's event types in arrival order, once its RestoreFinished arrived."""
    await tap.wait_for(
        lambda m: m.type == "RestoreFinished" and m.body["restore_id"] == rid, within_s=30
    )
    return [m.body["type"] for m in tap.messages if m.body.get("restore_id") == rid]


async def vm_started_after(
    world: RunWorld, vm_id: str, asked: float, restore: asyncio.Task[r.RestoreInfo] | None = None
) -> float:
    """Seconds from ``asked`` (wall clock) to the emulator's next ``vm_started`` of the
    VM; fails if ``restore`` ends first."""
    async with asyncio.timeout(300):
        while True:
            state = await asyncio.to_thread(world.emulator.state)
            starts = [
                e.at.timestamp() for e in state.events
                if e.kind == "vm_started" and e.vm_id == vm_id and e.at.timestamp() >= asked
            ]  # fmt: skip
            if starts:
                return starts[0] - asked
            if restore is not None and restore.done():
                raise AssertionError(f"the restore ended, the VM never started: {restore.result()}")
            await asyncio.sleep(0.05)
