"""Snapshot endpoints of the emulator: real RBD snapshots on every Ceph disk of a VM.

With ``quiesce`` and a running guest agent, the snapshot is bracketed by ``fs_freeze`` and
``fs_thaw`` events in the log (what the QEMU guest agent would do inside the guest); the
thaw is recorded even when a disk snapshot fails, as a real agent would be thawed.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import msgspec
from aiohttp import web
from tests.support.emulator.runtime import EMULATOR, ApiError, Emulator, find_vm, reply

from edgeback_platform.models import (
    DiskSnapshot,
    DiskSnapshotId,
    SnapshotId,
    SnapshotRequest,
    Vm,
    VmSnapshot,
)

_request_decoder = msgspec.json.Decoder(SnapshotRequest)


async def create_snapshot(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    try:
        body = _request_decoder.decode(await request.read() or b"{}")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, "invalid_body", str(exc)) from exc
    async with emu.lock:
        vm = find_vm(emu, request)
        if vm.state == "shelved":
            raise ApiError(409, "vm_shelved", f"VM {vm.id} is shelved: its disks are offloaded")
        parts = tuple(
            DiskSnapshot(disk_id=d.id, snapshot_id=DiskSnapshotId(str(uuid.uuid4())))
            for d in vm.disks
        )
        snapshot = VmSnapshot(
            id=SnapshotId(str(uuid.uuid4())),
            vm_id=vm.id,
            disks=parts,
            frozen=body.quiesce and vm.can_quiesce,
            created=datetime.now(UTC),
        )
        if snapshot.frozen:
            emu.state.record("fs_freeze", vm.id, snapshot.id)
    # the RBD snapshots outside the lock: a cloud snapshots VMs side by side (each takes
    # up to a second on the dev cluster, and a fleet of workers asks for several at once)
    try:
        await _snap_disks(emu, vm, snapshot)
    finally:
        if snapshot.frozen:
            async with emu.lock:
                emu.state.record("fs_thaw", vm.id, snapshot.id)
    async with emu.lock:
        emu.state.snapshots.append(snapshot)
        emu.state.record("snapshot_created", vm.id, snapshot.id)
        await emu.persist()
    return reply(snapshot, 201)


async def _snap_disks(emu: Emulator, vm: Vm, snapshot: VmSnapshot) -> None:
    """Snapshot each Ceph disk, all at once (as under one guest freeze; each snapshot
    waits about a second for the monitors, which take concurrent ones together); on a
    failure remove the ones made."""
    ceph = emu.state.ceph
    targets = [
        (image, ceph.snap_name(part.snapshot_id))
        for disk, part in zip(vm.disks, snapshot.disks, strict=True)
        if (image := ceph.image_name(vm.id, disk)) is not None
    ]
    images = emu.require_images()
    made = await asyncio.gather(
        *(asyncio.to_thread(images.snap, image, snap) for image, snap in targets),
        return_exceptions=True,
    )
    failed = [exc for exc in made if isinstance(exc, BaseException)]
    if failed:
        done = [t for t, result in zip(targets, made, strict=True) if result is None]
        await asyncio.gather(*(asyncio.to_thread(images.unsnap, i, s) for i, s in done))
        raise ApiError(500, "snapshot_failed", f"RBD snapshot failed: {failed[0]}") from failed[0]


async def delete_snapshot(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    async with emu.lock:
        vm = find_vm(emu, request)
        snap_id = SnapshotId(request.match_info["snapshot_id"])
        snapshot = emu.state.snapshot(vm.id, snap_id)
        if snapshot is None:
            raise ApiError(404, "snapshot_not_found", f"no snapshot {snap_id} on VM {vm.id}")
        ceph, images = emu.state.ceph, emu.require_images()
        await asyncio.gather(
            *(
                asyncio.to_thread(images.unsnap, image, ceph.snap_name(snapshot.for_disk(d.id)))
                for d in vm.disks
                if (image := ceph.image_name(vm.id, d)) is not None
            )
        )
        emu.state.snapshots.remove(snapshot)
        emu.state.record("snapshot_deleted", vm.id, snap_id)
        await emu.persist()
    return web.Response(status=204)
