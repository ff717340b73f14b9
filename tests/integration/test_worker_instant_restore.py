"""The worker's instant restore of a VM with two disks, against the dev Ceph cluster, the
platform emulator and a storage node, each its own process.

Both disks are backed up from a platform snapshot through the data path, then changed
on the live images; the instant restore puts the snapshot back on the original path.
Checked: readable seconds after the request, byte-identical after commit and with the
node stopped, moved-aside images removed (or kept); a capability revoked mid-copy
aborts and puts the changed originals back unchanged; a worker SIGKILLed mid-copy is
replaced by another call with the same inputs that ends committed; HTTPS with a CA
librbd is told to trust. Times are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from tests.bench.images import image_sha256, remove_image
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.instant_worker import DiskSpec, InstantSpec, child, run
from tests.support.processes import NodeProcess, node_process_async
from tests.support.storage_node import MANIFEST_KEY, TOKEN, make_pools
from tests.support.tls import make_tls

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.ids import PoolId
from edgeback_blocks.manifest import BackupType, ManifestHeader, created_ms
from edgeback_blocks.pipeline import backup_disk
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import MigrationState, RbdPool
from edgeback_core.errors import InstantRestoreFailedError, InvalidInputError
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint
from edgeback_worker.instant_plan import CAPABILITY_KEY, DiskProgress, InstantEvent, VmStarted
from edgeback_worker.instant_restore import InstantRestoreResult

pytestmark = pytest.mark.integration

AK, SK = "AK-instant", "sk-instant-0123456789"
VERSION = "20260101T000000Z-00000000000000a1"
THROTTLED = {"EDGEBACK_DEDUP_IMAGE_BYTES_PER_S": str(6 * 1024 * 1024)}
"""Slow image reads (6 MiB/s, ~11 s for both disks), so a failure or a kill lands mid-copy."""
KILL_AFTER_S = 1.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Scene:
    spec: InstantSpec
    node: NodeProcess
    cloud: EmulatorProcess
    snapshot_sha: dict[str, str]
    """target image → sha256 of the backed-up snapshot."""
    live_sha: dict[str, str]
    """target image → sha256 of its changed live content before the restore."""


@asynccontextmanager
async def scene(
    pool: RbdPool, ceph_conf: str, tmp_path: Path, *, node_env: Mapping[str, str] | None = None,
    https: bool = False, keep: bool = False,
) -> AsyncIterator[Scene]:  # fmt: skip
    """An emulated VM with two 32 MiB disks, backed up, then changed; a node serving it."""
    make_pools(tmp_path / "pools")
    env = dict(node_env or {})
    tls = make_tls(tmp_path) if https else None
    if tls is not None:
        env |= {"EDGEBACK_DEDUP_TLS_CERT_FILE": str(tls.cert_file),
                "EDGEBACK_DEDUP_TLS_KEY_FILE": str(tls.key_file)}  # fmt: skip
    cloud_dir = tmp_path / "cloud"
    with emulator_process(
        ceph_conf, cloud_dir, vms=1, disk_mib="32", access_key=AK, secret_key=SK
    ) as cloud:
        async with node_process_async(tmp_path / "pools", threads=4, env=env) as node:
            url = f"{'https' if https else 'http'}://127.0.0.1:{node.port}"
            ca = None if tls is None else str(tls.ca_file)
            spec, snap_sha = await _back_up(pool, cloud, url, ca, node)
            spec = msgspec.structs.replace(spec, ceph_conf=ceph_conf, keep_moved_aside=keep)
            live = {d.target: await _change(pool, d.target) for d in spec.disks}
            try:
                yield Scene(spec=spec, node=node, cloud=cloud, snapshot_sha=snap_sha, live_sha=live)
            finally:
                await _clean_up(pool, spec)


async def _back_up(
    pool: RbdPool, cloud: EmulatorProcess, url: str, ca: str | None, node: NodeProcess
) -> tuple[InstantSpec, dict[str, str]]:
    state = cloud.state()
    vm = state.vms[0]
    endpoint = PlatformEndpoint(address="127.0.0.1", port=cloud.port, access_key=AK,
                                secret_key=Secret(SK))  # fmt: skip
    async with EdgeCloudClient(endpoint=endpoint, retry=RetryPolicy(retries=1)) as platform:
        snap = await platform.create_snapshot(vm.id, quiesce=False)
    disks, shas = [], {}
    async with PoolClient(url, TOKEN, "dd", ca_file=ca) as client:
        for disk in vm.disks:
            image = state.ceph.image_name(vm.id, disk)
            assert image is not None
            snap_name = state.ceph.snap_name(snap.for_disk(disk.id))
            header = ManifestHeader(
                vm_id=vm.id, disk_id=disk.id, image=f"rbd/{image}@{snap_name}",
                image_size=disk.size, created_ms=created_ms(datetime.now(UTC)),
                backup_type=BackupType.FULL, pool_id=PoolId("dd"), version=VERSION,
            )  # fmt: skip
            async with pool.open_image(image, snapshot=snap_name) as opened:
                result = await backup_disk(
                    opened,
                    header=header,
                    target=client,
                    key=node.key("dd"),
                )
                shas[image] = await image_sha256(opened, disk.size)
            await client.put_manifest(vm.id, disk.id, VERSION, result.manifest.encode(MANIFEST_KEY))
            disks.append(DiskSpec(disk=disk.id, version=VERSION, target=image, size=disk.size))
    spec = InstantSpec(
        ceph_conf="", ceph_pool=state.ceph.pool, node_url=url, node_token=TOKEN,
        node_pool="dd", mac_key=MANIFEST_KEY.mac.hex(), ca_file=ca, platform_port=cloud.port,
        access_key=AK, secret_key=SK, restore_key=f"run-{os.urandom(4).hex()}/{vm.id}",
        vm=vm.id, disks=tuple(disks),
    )  # fmt: skip
    return spec, shas


async def _change(pool: RbdPool, name: str) -> str:
    """Overwrite two chunks of the live image: the restore must bring the snapshot back."""
    async with pool.open_image(name, read_only=False) as image:
        await image.write(0, os.urandom(CHUNK_SIZE))
        await image.write(5 * CHUNK_SIZE, b"changed after the backup" * 1000)
        return await image_sha256(image, await image.size())


async def _sha(pool: RbdPool, name: str) -> str:
    async with pool.open_image(name) as image:
        return await image_sha256(image, await image.size())


async def _clean_up(pool: RbdPool, spec: InstantSpec) -> None:
    """Leave the pool as the emulator's purge expects: no migration, no aside images."""
    plan = spec.plan()
    for disk in plan.disks:
        if await pool.image_exists(disk.target):
            with contextlib.suppress(InvalidInputError):
                await pool.migration_abort(disk.target)
        await remove_image(pool, plan.aside_name(disk))


async def _restore_and_read(
    pool: RbdPool, spec: InstantSpec
) -> tuple[float, float, list[InstantEvent]]:
    """Run the restore; once the VM is started, read the first 4 MiB of every disk.

    Returns (VM started, both first reads done) in seconds from the request, and events.
    """
    events: list[InstantEvent] = []
    begin = time.monotonic()
    task = await _wait_vm_started(spec, events)
    vm_started = time.monotonic() - begin
    for disk in spec.disks:
        async with pool.open_image(disk.target) as image:
            assert len(await image.read(0, CHUNK_SIZE)) == CHUNK_SIZE
    first_reads = time.monotonic() - begin
    await task
    return vm_started, first_reads, events


async def test_instant_restore_commits_identical_and_removes_originals(
    pool: RbdPool, ceph_conf: str, tmp_path: Path
) -> None:
    async with scene(pool, ceph_conf, tmp_path) as s:
        begin = time.monotonic()
        vm_started, first_reads, events = await _restore_and_read(pool, s.spec)
        committed = time.monotonic() - begin
        assert s.cloud.state().vms[0].state == "running"
        await asyncio.to_thread(s.node.service.terminate, 30)  # the copies must not need it
        plan = s.spec.plan()
        for disk in plan.disks:
            assert await _sha(pool, disk.target) == s.snapshot_sha[disk.target]
            assert not await pool.image_exists(plan.aside_name(disk))
            with pytest.raises(InvalidInputError):  # committed: no migration any more
                await pool.migration_status(disk.target)
    progress = [e for e in events if isinstance(e, DiskProgress)]
    print(
        f"\ninstant restore 2 x 32 MiB: VM started {vm_started:.3f} s, both disks' first "
        f"4 MiB read {first_reads:.3f} s, committed {committed:.3f} s, "
        f"{len(progress)} progress events"
    )
    assert vm_started < 5.0 and first_reads < 5.0
    assert {e.disk for e in progress} == {d.disk for d in s.spec.disks}
    last = {e.disk: e for e in progress}
    assert all(e.done_bytes == e.total_bytes for e in last.values())


async def _wait_vm_started(
    spec: InstantSpec, events: list[InstantEvent]
) -> asyncio.Task[InstantRestoreResult]:
    """Start the restore as a task; return it once every disk is prepared."""
    started_vm = asyncio.Event()

    def on_event(event: InstantEvent) -> None:
        events.append(event)
        if isinstance(event, VmStarted):
            started_vm.set()

    task = asyncio.create_task(run(spec, on_event))
    waiting = asyncio.create_task(started_vm.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    assert started_vm.is_set(), task.result()
    return task


async def test_capability_revoked_mid_copy_aborts_and_puts_originals_back(
    pool: RbdPool, ceph_conf: str, tmp_path: Path
) -> None:
    async with scene(pool, ceph_conf, tmp_path, node_env=THROTTLED) as s:
        events: list[InstantEvent] = []
        task = await _wait_vm_started(s.spec, events)
        async with PoolClient(s.spec.node_url, TOKEN, "dd") as client:
            for spec_disk in s.spec.disks:
                async with pool.open_image(spec_disk.target) as image:
                    handle = await image.metadata_get(CAPABILITY_KEY)
                assert handle is not None
                await client.revoke_capability(handle)
        begin = time.monotonic()
        with pytest.raises(InstantRestoreFailedError) as failed:
            await task
        print(f"\nrevoked mid-copy: failed and rolled back in {time.monotonic() - begin:.3f} s: "
              f"{failed.value.message}")  # fmt: skip
        outcomes = {o["disk"]: o["outcome"] for o in failed.value.details["disks"] if "disk" in o}
        assert outcomes == {d.disk: "aborted; original image back" for d in s.spec.disks}
        assert failed.value.details["cause"] == "rbd_io_error"
        plan = s.spec.plan()
        for disk in plan.disks:
            assert await _sha(pool, disk.target) == s.live_sha[disk.target]
            assert not await pool.image_exists(plan.aside_name(disk))
        assert s.cloud.state().vms[0].state == "stopped"


def _child_vm_started(proc: subprocess.Popen[bytes]) -> None:
    """Read the child's output until it says the VM was started (every disk prepared)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith(b'{"event"'):
            continue  # a log line
        event = json.loads(line)["event"]
        if event == "VmStarted":
            return
        assert event not in ("result", "error"), line
    raise AssertionError("the child ended before starting the VM")


async def test_worker_killed_mid_copy_is_resumed_by_another(
    pool: RbdPool, ceph_conf: str, tmp_path: Path
) -> None:
    async with scene(pool, ceph_conf, tmp_path, node_env=THROTTLED) as s:
        proc = child(s.spec)
        try:
            await asyncio.to_thread(_child_vm_started, proc)
            # librbd copies up to 10 objects at once and reports each when done, so
            # progress comes late on small disks: kill at a time well inside the copy
            await asyncio.sleep(KILL_AFTER_S)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
        finally:
            if proc.poll() is None:
                proc.kill()
        states = [(await pool.migration_status(d.target)).state for d in s.spec.disks]
        assert all(st is MigrationState.EXECUTING for st in states)
        begin = time.monotonic()
        await run(s.spec, lambda event: None)
        resumed = time.monotonic() - begin
        plan = s.spec.plan()
        for disk in plan.disks:
            assert await _sha(pool, disk.target) == s.snapshot_sha[disk.target]
            assert not await pool.image_exists(plan.aside_name(disk))
    print(f"\nSIGKILL {KILL_AFTER_S} s into execute (states {[st.name for st in states]}): "
          f"resumed to commit in {resumed:.3f} s")  # fmt: skip


async def test_https_node_is_trusted_through_ssl_cert_file(
    pool: RbdPool, ceph_conf: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with scene(pool, ceph_conf, tmp_path, https=True, keep=True) as s:
        assert s.spec.node_url.startswith("https://") and s.spec.ca_file is not None
        # librbd verifies the peer against OpenSSL's default paths: without the CA, refused
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(InstantRestoreFailedError) as refused:
            await run(s.spec, lambda event: None)
        for spec_disk in s.spec.disks:
            assert await _sha(pool, spec_disk.target) == s.live_sha[spec_disk.target]
        monkeypatch.setenv("SSL_CERT_FILE", s.spec.ca_file)
        begin = time.monotonic()
        vm_started, first_reads, _ = await _restore_and_read(pool, s.spec)
        committed = time.monotonic() - begin
        plan = s.spec.plan()
        for disk in plan.disks:
            assert await _sha(pool, disk.target) == s.snapshot_sha[disk.target]
            assert await _sha(pool, plan.aside_name(disk)) == s.live_sha[disk.target]  # kept
    print(f"\nhttps: untrusted CA refused ({refused.value.details['cause']}); trusted: VM "
          f"started {vm_started:.3f} s, first reads {first_reads:.3f} s, committed "
          f"{committed:.3f} s")  # fmt: skip
