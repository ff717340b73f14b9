"""The HTTP client against the emulator running as its own process over the real Ceph pool."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import rados
import rbd
from tests.support.emulator.state import CephTarget, EmulatorState, load
from tests.support.emulator_process import emulator_process
from tests.support.processes import free_port

from edgeback_core.errors import ConflictError, NotFoundError, PlatformAuthError, UnavailableError
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint
from edgeback_platform.models import Vm

CHUNK = 4 << 20
AK, SK = "AK-integration", "sk-integration-0123456789"
pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class RunningEmulator:
    port: int
    state_file: Path
    ceph: CephTarget

    def client(
        self, *, secret: str = SK, port: int | None = None, retries: int = 3
    ) -> EdgeCloudClient:
        endpoint = PlatformEndpoint(
            address="127.0.0.1", port=port or self.port, access_key=AK, secret_key=Secret(secret)
        )
        return EdgeCloudClient(
            endpoint=endpoint, retry=RetryPolicy(retries=retries, base_delay=0.01, max_delay=0.05)
        )

    def state(self) -> EmulatorState:
        return load(self.state_file)

    def events(self, vm_id: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/emulator/events?vm_id={vm_id}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            events: list[dict[str, Any]] = msgspec.json.decode(answer.read())["events"]
        return events

    def rbd_snaps(self, image: str) -> list[str]:
        with (
            rados.Rados(conffile=self.ceph.conf, name="client.admin") as cluster,
            cluster.open_ioctx(self.ceph.pool) as ioctx,
            rbd.Image(ioctx, image) as img,
        ):
            return [s["name"] for s in img.list_snaps()]


@pytest.fixture
def emulator(ceph_conf: str, tmp_path: Path) -> Iterator[RunningEmulator]:
    with emulator_process(
        ceph_conf, tmp_path, vms=8, disk_mib="8,16", access_key=AK, secret_key=SK
    ) as cloud:
        yield RunningEmulator(port=cloud.port, state_file=cloud.state_file, ceph=cloud.state().ceph)


def _pick(vms: list[Vm], *, state: str, agent_running: bool, storage: str = "ceph") -> Vm:
    return next(
        vm
        for vm in vms
        if vm.state == state
        and vm.guest_agent.running == agent_running
        and all(d.storage == storage for d in vm.disks)
    )


async def test_browse_hosts_and_vms(emulator: RunningEmulator) -> None:
    async with emulator.client() as client:
        info = await client.check()
        hosts = await client.list_hosts()
        vms = await client.list_vms(None)
        per_host = [await client.list_vms(h.id) for h in hosts]
        found = await client.list_vms(None, keyword="DB-0")
    assert info.access_key == AK
    assert len(hosts) == 2 and len(vms) == 8
    assert sorted(v.id for group in per_host for v in group) == sorted(v.id for v in vms)
    assert [v.name for v in found] == ["db-02"]
    assert {v.state for v in vms} == {"running", "stopped", "suspended", "paused", "shelved"}
    assert any(not v.on_ceph for v in vms)
    system = [d for v in vms for d in v.disks if d.boot]
    assert len(system) == 8 and all(d.volume_id is None for d in system)


async def test_seeded_disks_are_real_images_with_mixed_content(
    emulator: RunningEmulator,
) -> None:
    state = emulator.state()
    kinds: set[str] = set()
    with (
        rados.Rados(conffile=emulator.ceph.conf, name="client.admin") as cluster,
        cluster.open_ioctx(emulator.ceph.pool) as ioctx,
    ):
        for vm in state.vms:
            for disk in vm.disks:
                image = emulator.ceph.image_name(vm.id, disk)
                if image is None:
                    continue
                assert image == (f"{vm.id}_disk" if disk.boot else disk.volume_id)
                with rbd.Image(ioctx, image, read_only=True) as img:
                    assert img.size() == disk.size
                    kinds |= {_kind(img.read(o, CHUNK)) for o in range(0, disk.size, CHUNK)}
    assert kinds == {"zeros", "text", "random"}


def _kind(chunk: bytes) -> str:
    if chunk.count(0) == len(chunk):
        return "zeros"
    return "text" if chunk[:4096].isascii() else "random"


async def test_quiesced_snapshot_is_real_and_frozen(emulator: RunningEmulator) -> None:
    vm = _pick(emulator.state().vms, state="running", agent_running=True)
    assert len(vm.disks) >= 2
    async with emulator.client() as client:
        snap = await client.create_snapshot(vm.id, quiesce=True)
    assert snap.frozen and snap.vm_id == vm.id
    for disk in vm.disks:
        image = emulator.ceph.image_name(vm.id, disk)
        assert image is not None
        assert emulator.rbd_snaps(image) == [emulator.ceph.snap_name(snap.for_disk(disk.id))]
    kinds = [(e["kind"], e["snapshot_id"]) for e in emulator.events(vm.id)]
    assert kinds == [("fs_freeze", snap.id), ("fs_thaw", snap.id), ("snapshot_created", snap.id)]


async def test_snapshot_without_running_agent_is_crash_consistent(
    emulator: RunningEmulator,
) -> None:
    vm = _pick(emulator.state().vms, state="running", agent_running=False)
    async with emulator.client() as client:
        snap = await client.create_snapshot(vm.id, quiesce=True)
    assert not snap.frozen
    assert [e["kind"] for e in emulator.events(vm.id)] == ["snapshot_created"]
    image = emulator.ceph.image_name(vm.id, vm.disks[0])
    assert image is not None and len(emulator.rbd_snaps(image)) == 1


async def test_delete_snapshot_removes_rbd_snapshots(emulator: RunningEmulator) -> None:
    vm = _pick(emulator.state().vms, state="running", agent_running=True)
    images = [emulator.ceph.image_name(vm.id, d) or "" for d in vm.disks]
    async with emulator.client() as client:
        snap = await client.create_snapshot(vm.id, quiesce=False)
        assert all(emulator.rbd_snaps(i) for i in images)
        await client.delete_snapshot(vm.id, snap.id)
        assert not any(emulator.rbd_snaps(i) for i in images)
        with pytest.raises(NotFoundError):
            await client.delete_snapshot(vm.id, snap.id)
    assert emulator.state().snapshots == []


async def test_shelved_vm_cannot_be_snapshotted(emulator: RunningEmulator) -> None:
    vm = next(v for v in emulator.state().vms if v.state == "shelved")
    async with emulator.client() as client:
        with pytest.raises(ConflictError) as info:
            await client.create_snapshot(vm.id, quiesce=True)
    assert info.value.details["platform_code"] == "vm_shelved"


async def test_non_ceph_vm_snapshot_touches_no_rbd(emulator: RunningEmulator) -> None:
    vm = next(v for v in emulator.state().vms if not v.on_ceph)
    async with emulator.client() as client:
        snap = await client.create_snapshot(vm.id, quiesce=True)
    assert snap.frozen and len(snap.disks) == len(vm.disks)
    assert all(emulator.ceph.image_name(vm.id, d) is None for d in vm.disks)


async def test_start_and_stop_vm(emulator: RunningEmulator) -> None:
    vm = next(v for v in emulator.state().vms if v.state == "stopped")
    async with emulator.client() as client:
        started = await client.start_vm(vm.id)
        again = await client.get_vm(vm.id)
        stopped = await client.stop_vm(vm.id)
    assert started.state == "running" and again == started
    assert started.guest_agent.running == vm.guest_agent.installed
    assert stopped.state == "stopped" and not stopped.guest_agent.running
    assert [e["kind"] for e in emulator.events(vm.id)] == ["vm_started", "vm_stopped"]
    assert emulator.state().vm(vm.id) == stopped  # persisted


async def test_wrong_keys_are_refused(emulator: RunningEmulator) -> None:
    async with emulator.client(secret="not-the-secret") as client:
        with pytest.raises(PlatformAuthError) as info:
            await client.check()
    assert info.value.code == "platform_auth_failed"
    assert "signature mismatch" in str(info.value)


async def test_wrong_address_is_unavailable_quickly(emulator: RunningEmulator) -> None:
    started = time.monotonic()
    async with emulator.client(port=free_port(), retries=2) as client:
        with pytest.raises(UnavailableError) as info:
            await client.check()
    assert info.value.code == "platform_unreachable"
    assert time.monotonic() - started < 2.0


def _post(emulator: RunningEmulator, path: str, body: object) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{emulator.port}{path}", data=msgspec.json.encode(body), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, msgspec.json.decode(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, msgspec.json.decode(exc.read())


async def test_control_route_creates_a_vm_with_blank_disks(emulator: RunningEmulator) -> None:
    host = emulator.state().hosts[1]
    sizes = [8 << 20, 16 << 20]
    body = {"name": "restored-web-01", "host_id": host.id, "disk_sizes": sizes}
    status, made = _post(emulator, "/emulator/vms", body)
    assert status == 201, made
    vm = msgspec.convert(made, Vm)
    async with emulator.client() as client:  # the platform API lists it, as a console's VM
        found = await client.list_vms(host.id, keyword="restored-web")
    assert found == [vm] and emulator.state().vm(vm.id) == vm  # persisted
    assert vm.state == "stopped" and vm.on_ceph and [d.size for d in vm.disks] == sizes
    assert [d.boot for d in vm.disks] == [True, False] and vm.disks[0].volume_id is None
    with (
        rados.Rados(conffile=emulator.ceph.conf, name="client.admin") as cluster,
        cluster.open_ioctx(emulator.ceph.pool) as ioctx,
    ):
        for disk in vm.disks:
            image = emulator.ceph.image_name(vm.id, disk)
            assert image is not None
            with rbd.Image(ioctx, image, read_only=True) as img:
                assert img.size() == disk.size
                assert img.read(0, CHUNK) == bytes(CHUNK)  # blank
    again, taken = _post(emulator, "/emulator/vms", body)
    assert (again, taken["error"]["code"]) == (409, "vm_name_taken")


async def test_control_route_refuses_bad_vms(emulator: RunningEmulator) -> None:
    refused = {
        "invalid_disks": {"name": "x", "disk_sizes": []},
        "invalid_disk_size": {"name": "x", "disk_sizes": [4096, 1000]},
        "invalid_name": {"name": " ", "disk_sizes": [4096]},
        "host_not_found": {"name": "x", "disk_sizes": [4096], "host_id": "nope"},
        "invalid_body": {"name": "x", "disk_sizes": [4096], "color": "red"},
    }
    before = emulator.state().vms
    for code, body in refused.items():
        status, answer = _post(emulator, "/emulator/vms", body)
        assert (status, answer["error"]["code"]) == (400, code), body
    for size in (0, 1 << 50):
        status, answer = _post(emulator, "/emulator/vms", {"name": "x", "disk_sizes": [size]})
        assert (status, answer["error"]["code"]) == (400, "invalid_disk_size")
    assert emulator.state().vms == before  # nothing made
