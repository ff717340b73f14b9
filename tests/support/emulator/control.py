"""Unsigned ``/emulator/...`` endpoints that let tests read and steer the emulated cloud.

Not part of the platform contract: the event log (freeze/thaw, snapshots, power),
VM state and guest agent changes, and faults injected into the next API answers.
"""

from __future__ import annotations

import msgspec
from aiohttp import web
from tests.support.emulator.runtime import EMULATOR, ApiError, error_reply, find_vm, reply

from edgeback_platform.models import GuestAgent, VmState


class VmPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state: VmState | None = None
    guest_agent: GuestAgent | None = None


class Faults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    statuses: list[int]
    """The next API requests are answered with these statuses, one each, in order."""


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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/emulator/health", health)
    app.router.add_get("/emulator/events", events)
    app.router.add_patch("/emulator/vms/{vm_id}", patch_vm)
    app.router.add_post("/emulator/faults", inject_faults)
