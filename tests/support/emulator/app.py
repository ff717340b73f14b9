"""The emulator's aiohttp app: the edge-cloud API of ``docs/platform-api.md`` over real RBD.

``/api/v1/...`` is the platform API (signed requests only); ``/emulator/...`` is an
unsigned control surface for tests (event log, VM state changes, injected faults).
State changes hold one lock, so state edits never interleave (a new snapshot's RBD
snapshots are taken outside it, so VMs snapshot side by side), and the state file is
rewritten after each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiohttp import web
from tests.support.emulator import control, snapshots
from tests.support.emulator.ceph import CephImages
from tests.support.emulator.runtime import EMULATOR, ApiError, Emulator, error_reply, find_vm, reply
from tests.support.emulator.state import load

from edgeback_platform import signing
from edgeback_platform.models import HostList, HypervisorId, PlatformInfo, VmList

API = "/api/v1"
VERSION = "1.8.0-emulator"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def api_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Injected faults, then signature check, then idempotent replay of POSTs."""
    if not request.path.startswith(API + "/"):
        return await handler(request)
    emu = request.app[EMULATOR]
    if emu.faults:
        status = emu.faults.pop(0)
        return error_reply(status, "injected_fault", f"emulator fault {status}")
    body = await request.read()
    to_sign = signing.RequestToSign.build(
        request.method,
        request.path,
        request.query.items(),
        request.headers.get(signing.DATE_HEADER, ""),
        body,
    )
    try:
        signing.verify(
            to_sign,
            request.headers.get(signing.AUTH_HEADER),
            secrets=emu.secrets,
            now=datetime.now(UTC),
        )
    except signing.SignatureError as exc:
        return error_reply(401, "auth_failed", exc.reason)
    key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
    if not key:
        return await _answer(request, handler)
    if key not in emu.replies and key not in emu.inflight:
        # the work goes on when the caller hangs up (a real platform's would too), so a
        # repeat of the key finds it done, or waits for it, and never does it twice
        work = asyncio.ensure_future(_recorded(emu, key, request, handler))
        emu.inflight[key] = work
        work.add_done_callback(lambda _: emu.inflight.pop(key, None))
    found = emu.replies.get(key)
    status, body = found if found is not None else await asyncio.shield(emu.inflight[key])
    return web.Response(body=body, status=status, content_type="application/json")


async def _recorded(
    emu: Emulator, key: str, request: web.Request, handler: Handler
) -> tuple[int, bytes]:
    response = await _answer(request, handler)
    assert isinstance(response, web.Response), "idempotent POSTs answer JSON"
    answer = (response.status, bytes(response.body or b""))  # type: ignore[arg-type]
    if response.status < 500:
        emu.replies[key] = answer
    return answer


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_reply(exc.status, exc.code, exc.message)


async def ping(request: web.Request) -> web.Response:
    creds = signing.parse_authorization(request.headers[signing.AUTH_HEADER])
    return reply(
        PlatformInfo(name="edge-cloud-emulator", version=VERSION, access_key=creds.access_key)
    )


async def list_hosts(request: web.Request) -> web.Response:
    return reply(HostList(hosts=tuple(request.app[EMULATOR].state.hosts)))


async def list_vms(request: web.Request) -> web.Response:
    state = request.app[EMULATOR].state
    host_id = request.query.get("host_id")
    if host_id and state.host(HypervisorId(host_id)) is None:
        raise ApiError(404, "host_not_found", f"no host {host_id}")
    keyword = request.query.get("keyword", "").lower()
    vms = [
        vm
        for vm in state.vms
        if (not host_id or vm.host_id == host_id)
        and (keyword in vm.name.lower() or keyword in vm.id.lower())
    ]
    return reply(VmList(vms=tuple(vms)))


async def get_vm(request: web.Request) -> web.Response:
    return reply(find_vm(request.app[EMULATOR], request))


async def list_snapshots(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR]
    vm = find_vm(emu, request)
    return reply({"snapshots": [s for s in emu.state.snapshots if s.vm_id == vm.id]})


async def start_vm(request: web.Request) -> web.Response:
    return await _power(request, running=True)


async def stop_vm(request: web.Request) -> web.Response:
    return await _power(request, running=False)


async def _power(request: web.Request, *, running: bool) -> web.Response:
    emu = request.app[EMULATOR]
    async with emu.lock:
        vm = find_vm(emu, request)
        wanted = "running" if running else "stopped"
        if vm.state != wanted:
            agent = msgspec.structs.replace(
                vm.guest_agent, running=running and vm.guest_agent.installed
            )
            vm = msgspec.structs.replace(vm, state=wanted, guest_agent=agent)
            emu.state.replace_vm(vm)
            emu.state.record("vm_started" if running else "vm_stopped", vm.id)
            await emu.persist()
    return reply(vm)


async def _ceph_lifecycle(app: web.Application) -> AsyncIterator[None]:
    emu = app[EMULATOR]
    images = CephImages(emu.state.ceph)
    await asyncio.to_thread(images.__enter__)
    emu.images = images
    try:
        yield
    finally:
        emu.images = None
        await asyncio.to_thread(images.__exit__, None, None, None)


def make_app(emulator: Emulator, *, with_ceph: bool = True) -> web.Application:
    """The emulator app; ``with_ceph=False`` serves the API without touching RBD."""
    app = web.Application(middlewares=[api_guard])
    app[EMULATOR] = emulator
    if with_ceph:
        app.cleanup_ctx.append(_ceph_lifecycle)
    app.router.add_get(f"{API}/ping", ping)
    app.router.add_get(f"{API}/hosts", list_hosts)
    app.router.add_get(f"{API}/vms", list_vms)
    app.router.add_get(f"{API}/vms/{{vm_id}}", get_vm)
    app.router.add_get(f"{API}/vms/{{vm_id}}/snapshots", list_snapshots)
    app.router.add_post(f"{API}/vms/{{vm_id}}/snapshots", snapshots.create_snapshot)
    app.router.add_delete(
        f"{API}/vms/{{vm_id}}/snapshots/{{snapshot_id}}", snapshots.delete_snapshot
    )
    app.router.add_post(f"{API}/vms/{{vm_id}}/start", start_vm)
    app.router.add_post(f"{API}/vms/{{vm_id}}/stop", stop_vm)
    control.add_routes(app)
    return app


def open_emulator(state_file: Path, access_key: str, secret_key: str) -> Emulator:
    return Emulator(state=load(state_file), path=state_file, secrets={access_key: secret_key})
