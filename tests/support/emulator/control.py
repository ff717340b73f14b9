"""Unsigned ``/emulator/...`` endpoints that let tests read and steer the emulated cloud.

Not part of the platform contract: the event log (freeze/thaw, snapshots, power),
VM state and guest agent changes, faults injected into the next API answers, and new
VMs with blank RBD disks (``POST /emulator/vms``: what an operator does in the cloud's
own console before choosing the VM as a new-path restore target; edgeback never
creates VMs).
"""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from aiohttp import web
from tests.support.emulator.runtime import EMULATOR, ApiError, Emulator, error_reply, find_vm, reply

from edgeback_platform.models import (
    Disk,
    DiskId,
    GuestAgent,
    HypervisorId,
    Vm,
    VmId,
    VmState,
    VolumeId,
)

MAX_NAME = 128
MAX_DISKS = 16
MAX_DISK_SIZE = 1 << 40
"""1 TiB: RBD images are thin, but a typo should not make a petabyte disk."""
SECTOR = 512


class VmPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state: VmState | None = None
    guest_agent: GuestAgent | None = None


class Faults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    statuses: list[int]
    """The next API requests are answered with these statuses, one each, in order."""


class NewVm(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    disk_sizes: list[int]
    """Bytes, one per disk in attachment order; the first is the VM's system disk."""
    host_id: HypervisorId | None = None
    """Default: the first host."""
    state: VmState = "stopped"


async def health(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    return reply({"ok": True, "vms": len(state.vms), "hosts": len(state.hosts)})


async def events(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    vm_id = request.query.get("vm_id")
    since = int(request.query.get("since", "0"))
    found = [e for e in emu.state.events if e.seq > since and (vm_id is None or e.vm_id == vm_id)]
    return reply({"events": found})


async def patch_vm(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    try:
        patch = msgspec.json.decode(await request.read(), type=VmPatch)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return error_reply(400, "invalid_body", str(exc))
    async with emu.lock:
        try:
            vm = find_vm(emu, request)
        except ApiError as exc:
            return error_reply(exc.status, exc.code, exc.message)
        vm = msgspec.structs.replace(
            vm,
            state=patch.state or vm.state,
            guest_agent=patch.guest_agent or vm.guest_agent,
        )
        emu.state.replace_vm(vm)
        await emu.persist()
    return reply(vm)


async def inject_faults(request: web.Request) -> web.Response:
    try:
        faults = msgspec.json.decode(await request.read(), type=Faults)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return error_reply(400, "invalid_body", str(exc))
    request.app[EMULATOR].faults.extend(faults.statuses)
    return reply({"pending": len(request.app[EMULATOR].faults)})


async def create_vm(request: web.Request) -> web.Response:
    """A new VM with blank disks on Ceph (201), or 400 with a code saying what is wrong."""
    emu = request.app[EMULATOR]
    try:
        new = msgspec.json.decode(await request.read(), type=NewVm)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return error_reply(400, "invalid_body", str(exc))
    async with emu.lock:
        try:
            vm = _vm_of(emu, new)
            await asyncio.to_thread(_make_disks, emu, vm)
        except ApiError as exc:
            return error_reply(exc.status, exc.code, exc.message)
        emu.state.vms.append(vm)
        await emu.persist()
    return reply(vm, 201)


def _vm_of(emu: Emulator, new: NewVm) -> Vm:
    name = new.name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ApiError(400, "invalid_name", f"a VM name is 1-{MAX_NAME} printable characters")
    if any(v.name == name for v in emu.state.vms):
        raise ApiError(409, "vm_name_taken", f"a VM is named {name!r} already")
    if not emu.state.hosts:
        raise ApiError(400, "host_not_found", "the cloud has no host")
    host = emu.state.hosts[0] if new.host_id is None else emu.state.host(new.host_id)
    if host is None:
        raise ApiError(400, "host_not_found", f"no host {new.host_id}")
    if not 1 <= len(new.disk_sizes) <= MAX_DISKS:
        raise ApiError(400, "invalid_disks", f"a VM has 1-{MAX_DISKS} disks")
    bad = [s for s in new.disk_sizes if not 0 < s <= MAX_DISK_SIZE or s % SECTOR]
    if bad:
        raise ApiError(
            400, "invalid_disk_size",
            f"disk sizes are bytes, multiples of {SECTOR} up to {MAX_DISK_SIZE}: not {bad}",
        )  # fmt: skip
    vm_id = VmId(str(uuid.uuid4()))
    disks = tuple(
        Disk(
            id=DiskId(f"{vm_id}-disk{order}"),
            volume_id=None if order == 0 else VolumeId(str(uuid.uuid4())),
            size=size,
            pool=emu.state.ceph.pool,
            boot=order == 0,
            device_index=order,
        )
        for order, size in enumerate(new.disk_sizes)
    )
    running = new.state == "running"
    agent = GuestAgent(installed=True, running=running)
    return Vm(id=vm_id, name=name, host_id=host.id, state=new.state, guest_agent=agent, disks=disks)


def _make_disks(emu: Emulator, vm: Vm) -> None:
    """The VM's RBD images, blank; none left behind when one fails."""
    images = emu.require_images()
    made: list[str] = []
    try:
        for disk in vm.disks:
            name = emu.state.ceph.image_name(vm.id, disk)
            assert name is not None, "new disks are on Ceph"
            images.create_blank(name, disk.size)
            made.append(name)
    except BaseException:
        for name in made:
            images.remove(name)
        raise


def add_routes(app: web.Application) -> None:
    app.router.add_get("/emulator/health", health)
    app.router.add_get("/emulator/events", events)
    app.router.add_post("/emulator/vms", create_vm)
    app.router.add_patch("/emulator/vms/{vm_id}", patch_vm)
    app.router.add_post("/emulator/faults", inject_faults)
