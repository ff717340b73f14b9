"""The worker's restore of one VM (``vm_restore``) on real Ceph, the platform emulator
backed by Ceph, and a storage node process: a 2-disk VM backed up by the pipeline from
a platform snapshot, restored to the original path and to a new path (larger disks),
a corrupted chunk rolling every target disk back, and each refusal code once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
import pytest
from tests.support.emulator.ceph import CephImages
from tests.support.emulator.state import load, save
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import NodeProcess, node_process, node_process_async
from tests.support.storage_node import TOKEN, make_pools

from edgeback_blocks.ids import ChunkDigest, PoolId
from edgeback_blocks.keys import ClientKeys
from edgeback_blocks.manifest import BackupType, Manifest, ManifestHeader, created_ms
from edgeback_blocks.pipeline import backup_disk
from edgeback_blocks.pool_client import PoolClient
from edgeback_blocks.rbd import RbdCluster
from edgeback_cli.commands import fetch_manifest
from edgeback_core.errors import UnavailableError
from edgeback_core.messages import restores as r
from edgeback_core.messages.restores import DiskMap, PointDisk
from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint
from edgeback_platform.models import Vm, VmId
from edgeback_platform.templates import RbdTemplates
from edgeback_worker.vm_restore import (
    RestoreResources,
    VmRestoreOptions,
    VmRestoreRequest,
    manifest_ref,
    restore_vm,
    unchanged_that_differ,
)

pytestmark = pytest.mark.integration
MIB = 1 << 20
AK, SK = "AK-restore", "sk-restore-0123456789"
SECRET = b"s" * 32
VERSION = "v1"


def _enlarge_new_path_target(state_file: Path) -> None:
    """VM 1 (3 disks) becomes the new-path target: its disks grow to 40 MiB."""
    state = load(state_file)
    vm = state.vms[1]
    with CephImages(state.ceph) as images:
        for disk in vm.disks:
            with images.image(state.ceph.image_name(vm.id, disk) or "") as image:
                image.resize(40 * MIB)
    disks = tuple(msgspec.structs.replace(d, size=40 * MIB) for d in vm.disks)
    state.replace_vm(msgspec.structs.replace(vm, disks=disks))
    save(state, state_file)


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    cloud: EmulatorProcess
    node: NodeProcess
    ceph_conf: str
    source: Vm
    point: tuple[PointDisk, ...]
    source_images: dict[str, bytes]
    """Source disk id → the bytes of its snapshot (what was backed up)."""

    def vm(self, index: int) -> Vm:
        return self.cloud.state().vms[index]

    def image_name(self, vm: Vm, disk_index: int) -> str:
        name = self.cloud.state().ceph.image_name(vm.id, vm.disks[disk_index])
        assert name is not None
        return name

    def read(self, image: str, snap: str | None = None) -> bytes:
        with CephImages(self.cloud.state().ceph) as images, images.image(image) as img:
            if snap is not None:
                img.set_snap(snap)
            return bytes(img.read(0, img.size()))

    def write(self, image: str, data: bytes, offset: int = 0) -> None:
        with CephImages(self.cloud.state().ceph) as images, images.image(image) as img:
            img.write(data, offset)

    def snaps(self, image: str) -> list[str]:
        with CephImages(self.cloud.state().ceph) as images, images.image(image) as img:
            return [s["name"] for s in img.list_snaps()]

    def platform(self) -> EdgeCloudClient:
        endpoint = PlatformEndpoint(
            address="127.0.0.1", port=self.cloud.port, access_key=AK, secret_key=Secret(SK)
        )
        return EdgeCloudClient(endpoint=endpoint)

    def keys(self) -> ClientKeys:
        return ClientKeys.plain(SECRET, self.node.key("dd"))

    @asynccontextmanager
    async def resources(self) -> AsyncIterator[RestoreResources]:
        async with (
            self.platform() as platform,
            PoolClient(self.node.url, TOKEN, "dd") as pool,
            RbdCluster.connect(self.ceph_conf, "admin") as cluster,
        ):
            yield RestoreResources(
                platform=platform, pool=pool, keys=self.keys(), cluster=cluster,
                templates=RbdTemplates(),
            )  # fmt: skip

    async def patch(self, vm: Vm, body: dict[str, object]) -> None:
        import aiohttp  # noqa: PLC0415 - the emulator's control API only

        url = f"http://127.0.0.1:{self.cloud.port}/emulator/vms/{vm.id}"
        async with aiohttp.ClientSession() as http, http.patch(url, json=body) as answer:
            assert answer.status == 200


async def _back_up(site: Site) -> tuple[tuple[PointDisk, ...], dict[str, bytes]]:
    """Back up VM 0's two disks from one platform snapshot, as a run would."""
    vm = site.source
    async with site.platform() as platform:
        snapshot = await platform.create_snapshot(vm.id, quiesce=True)
    point: list[PointDisk] = []
    content: dict[str, bytes] = {}
    async with (
        PoolClient(site.node.url, TOKEN, "dd") as pool,
        RbdCluster.connect(site.ceph_conf, "admin") as cluster,
        cluster.open_pool("rbd") as rbd,
    ):
        for index, disk in enumerate(vm.disks):
            name, snap = site.image_name(vm, index), str(snapshot.for_disk(disk.id))
            async with rbd.open_image(name, snapshot=snap) as image:
                header = ManifestHeader(
                    vm_id=vm.id, disk_id=disk.id, image=f"rbd/{name}@{snap}",
                    image_size=await image.size(), created_ms=created_ms(snapshot.created),
                    backup_type=BackupType.FULL, version=VERSION, pool_id=PoolId("dd"),
                )  # fmt: skip
                result = await backup_disk(
                    image, header=header, target=pool, key=site.keys().digest
                )
            await pool.put_manifest(
                vm.id, disk.id, VERSION, result.manifest.encode(site.keys().manifest)
            )
            point.append(
                PointDisk(
                    disk_id=disk.id, size_bytes=disk.size,
                    manifest_name=f"{vm.id}/{disk.id}/{VERSION}", manifest_version=VERSION,
                )
            )  # fmt: skip
            content[disk.id] = site.read(name, snap)
    return tuple(point), content


@pytest.fixture(scope="module")
def site(ceph_conf: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("vmrestore")
    (work / "node").mkdir()
    make_pools(work / "node")
    with (
        emulator_process(
            ceph_conf, work / "cloud", vms=8, disk_mib="32", access_key=AK, secret_key=SK,
            prepare=_enlarge_new_path_target,
        ) as cloud,
        node_process(work / "node") as node,
    ):  # fmt: skip
        base = Site(
            cloud=cloud, node=node, ceph_conf=ceph_conf, source=cloud.state().vms[0],
            point=(), source_images={},
        )  # fmt: skip
        point, content = asyncio.run(_back_up(base))
        yield replace(base, point=point, source_images=content)


def _request(
    site: Site,
    target: Vm,
    *,
    mapping: tuple[tuple[str, str], ...] | None = None,
    options: VmRestoreOptions | None = None,
    disks: tuple[PointDisk, ...] | None = None,
) -> VmRestoreRequest:
    return VmRestoreRequest(
        restore_id=f"r-{os.urandom(4).hex()}", disks=site.point if disks is None else disks,
        target_vm_id=target.id, options=options or VmRestoreOptions(),
        mapping=None if mapping is None else tuple(
            DiskMap(source_disk_id=source, target_disk_id=disk) for source, disk in mapping
        ),
    )  # fmt: skip


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_original_path_overwrites_both_disks_and_starts_the_vm(site: Site) -> None:
    vm = site.source
    names = [site.image_name(vm, i) for i in range(2)]
    for name in names:  # the VM's disks changed since the backup
        site.write(name, os.urandom(MIB), offset=2 * MIB)
    await site.patch(vm, {"state": "running"})
    opts = VmRestoreOptions(snapshot_before=True, start_vm_after=True, streams_per_disk=2)
    async with site.resources() as res:
        outcome = await restore_vm(_request(site, vm, options=opts), res)
        after = await res.platform.get_vm(vm.id)
    assert outcome.status == "succeeded", outcome
    for disk, name in zip(vm.disks, names, strict=True):
        assert _digest(site.read(name)) == _digest(site.source_images[disk.id])
        assert outcome.stats[disk.id].image_size == disk.size
    assert outcome.started and after.state == "running"
    # the safety snapshot is removed after a success; the backup's snapshot stays
    assert outcome.snapshot_id is None
    assert all(len(site.snaps(name)) == 1 for name in names)


async def test_original_path_writes_only_what_changed_since_the_backups_snapshot(
    site: Site,
) -> None:
    """The VM's disks still hold the backup's snapshot: a restore rewrites the chunks
    Ceph's diff names (data overwritten, data discarded, zeros written over) and
    leaves the rest; with ``changed_only`` off it rewrites every data chunk."""
    vm, chunk = site.source, 4 * MIB
    name = site.image_name(vm, 0)
    async with site.resources() as res:
        entries = (await _manifest(site, res, 0)).entries
    data = [i for i, e in enumerate(entries) if e is not None]
    zero = [i for i, e in enumerate(entries) if e is None]
    assert len(data) >= 2 and zero, entries
    site.write(name, os.urandom(4096), offset=data[0] * chunk + 8192)
    site.write(name, os.urandom(4096), offset=zero[0] * chunk)
    with CephImages(site.cloud.state().ceph) as images, images.image(name) as img:
        img.discard(data[1] * chunk, chunk)
    disk_id, only = vm.disks[0].id, (site.point[0],)
    async with site.resources() as res:
        quick = await restore_vm(_request(site, vm, disks=only), res)
    assert quick.status == "succeeded", quick
    assert _digest(site.read(name)) == _digest(site.source_images[disk_id])
    stats = quick.stats[disk_id]
    assert stats.chunks_fetched == 2 and stats.bytes_zeroed == chunk, stats
    assert stats.bytes_left == len(entries) * chunk - 3 * chunk
    site.write(name, os.urandom(4096), offset=data[-1] * chunk)
    full_opts = VmRestoreOptions(changed_only=False)
    async with site.resources() as res:
        full = await restore_vm(_request(site, vm, disks=only, options=full_opts), res)
    assert full.status == "succeeded", full
    assert _digest(site.read(name)) == _digest(site.source_images[disk_id])
    assert full.stats[disk_id].chunks_fetched == len(data)


async def test_the_diff_is_checked_on_a_sample_of_the_chunks_it_calls_unchanged(
    site: Site,
) -> None:
    """The sample check the changed-only path runs before trusting Ceph's diff: on the
    backup's bytes it finds nothing; with every chunk rewritten behind the diff's back
    (here: the diff taken as "nothing changed"), whichever chunk it samples differs."""
    vm = site.source
    name, disk_id = site.image_name(vm, 0), vm.disks[0].id
    async with site.resources() as res:
        manifest = await _manifest(site, res, 0)
        done = await restore_vm(_request(site, vm, disks=(site.point[0],)), res)
        assert done.status == "succeeded", done
        async with res.cluster.open_pool("rbd") as pool, pool.open_image(name) as image:
            assert await unchanged_that_differ(image, manifest, frozenset(), res.keys.digest) == []
        chunks = len(manifest.entries)
        for index in range(chunks):
            site.write(name, os.urandom(4096), offset=index * 4 * MIB)
        async with res.cluster.open_pool("rbd") as pool, pool.open_image(name) as image:
            wrong = await unchanged_that_differ(image, manifest, frozenset(), res.keys.digest)
            assert len(wrong) == 1 and 0 <= wrong[0] < chunks, wrong
            # the chunks the diff names are never sampled
            every = frozenset(range(chunks))
            assert await unchanged_that_differ(image, manifest, every, res.keys.digest) == []
        again = await restore_vm(_request(site, vm, disks=(site.point[0],)), res)
    assert again.status == "succeeded", again
    assert _digest(site.read(name)) == _digest(site.source_images[disk_id])


async def test_new_path_writes_mapped_disks_and_zeroes_the_larger_tail(site: Site) -> None:
    target = site.vm(1)
    src = [d.id for d in site.source.disks]
    mapping = ((src[0], target.disks[2].id), (src[1], target.disks[0].id))
    untouched = site.read(site.image_name(target, 1))
    opts = VmRestoreOptions(snapshot_before=False, disks_per_vm=1)
    async with site.resources() as res:
        outcome = await restore_vm(_request(site, target, mapping=mapping, options=opts), res)
    assert outcome.status == "succeeded", outcome
    for source_id, target_index in ((src[0], 2), (src[1], 0)):
        data = site.read(site.image_name(target, target_index))
        source = site.source_images[source_id]
        assert len(data) == 40 * MIB
        assert _digest(data[: len(source)]) == _digest(source)
        assert data[len(source) :] == bytes(len(data) - len(source))
    assert site.read(site.image_name(target, 1)) == untouched


async def test_corrupt_chunk_fails_naming_it_and_rolls_back_every_disk(site: Site) -> None:
    target = site.vm(1)
    await site.patch(
        target, {"state": "running", "guest_agent": {"installed": True, "running": True}}
    )
    src = [d.id for d in site.source.disks]
    mapping = ((src[0], target.disks[0].id), (src[1], target.disks[1].id))
    names = [site.image_name(target, i) for i in range(2)]
    for name in names:
        site.write(name, os.urandom(MIB), offset=5 * MIB)
    before = {name: _digest(site.read(name)) for name in names}
    # the last data chunk of the second disk: the first disk is written by then
    async with site.resources() as res:
        manifest = await _manifest(site, res, 1)
    digest = next(d for d in reversed(manifest.entries) if d is not None)
    chunk_file = next((site.node.data_dir / "dd").rglob(digest.hex()))
    original = chunk_file.read_bytes()
    chunk_file.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    try:
        opts = VmRestoreOptions(snapshot_before=True, disks_per_vm=2)
        async with site.resources() as res:
            outcome = await restore_vm(_request(site, target, mapping=mapping, options=opts), res)
    finally:
        chunk_file.write_bytes(original)
    assert outcome.status == "failed"
    assert outcome.code in {"digest_mismatch", "chunk_header_invalid", "quarantined"}, outcome
    assert digest.hex() in outcome.message and "rolled back" in outcome.message
    assert set(outcome.rolled_back) == {target.disks[0].id, target.disks[1].id}
    assert {name: _digest(site.read(name)) for name in names} == before
    assert all(site.snaps(name) == [] for name in names)


async def _manifest(site: Site, res: RestoreResources, index: int) -> Manifest:
    return await fetch_manifest(manifest_ref(site.point[index]), res.pool, res.keys)


@dataclass
class FailingPool:
    """The real node client, whose ``fail_after``-th chunk fetch fails as if the node
    went away (the worker's connection to it lost)."""

    pool: PoolClient
    fail_after: int
    fetched: int = 0

    async def get_manifest(self, vm: str, disk: str, version: str) -> bytes:
        return await self.pool.get_manifest(vm, disk, version)

    async def missing(self, digests: Iterable[ChunkDigest]) -> set[ChunkDigest]:
        return await self.pool.missing(digests)

    async def get_chunk(self, digest: ChunkDigest) -> bytes:
        self.fetched += 1
        if self.fetched > self.fail_after:
            raise UnavailableError("storage node gone (test)")
        return await self.pool.get_chunk(digest)


async def test_restarted_disk_restore_rewrites_only_what_its_checkpoint_does_not_cover(
    site: Site,
) -> None:
    target = site.vm(1)
    src = site.point[0]
    mapping = ((src.disk_id, target.disks[1].id),)
    request = _request(
        site, target, mapping=mapping, disks=(src,),
        options=VmRestoreOptions(reconnect_s=0, checkpoint_interval_s=0, streams_per_disk=1),
    )  # fmt: skip
    async with site.resources() as res:
        data_chunks = sum(e is not None for e in (await _manifest(site, res, 0)).entries)
        failing = FailingPool(pool=res.pool, fail_after=data_chunks // 2)  # type: ignore[arg-type]
        first = await restore_vm(request, replace(res, pool=failing))
        second = await restore_vm(request, res)
    assert first.status == "failed" and first.code == "unavailable"
    assert first.rolled_back == ()
    assert second.status == "succeeded", second
    fetched = second.stats[target.disks[1].id].chunks_fetched
    # the second attempt fetched only what the first one's checkpoint did not cover
    assert 0 < fetched <= data_chunks - data_chunks // 2 + 2, (fetched, data_chunks)
    data = site.read(site.image_name(target, 1))
    assert data[: src.size_bytes] == site.source_images[src.disk_id]


@asynccontextmanager
async def _pool_missing_a_chunk(site: Site, work: Path) -> AsyncIterator[PoolClient]:
    """A second node over a copy of the pool that lost one chunk of disk 0 (the node
    indexes its chunks when it starts)."""
    copy = work / "node-copy"
    shutil.copytree(site.node.data_dir, copy, ignore=shutil.ignore_patterns("*.log"))
    async with site.resources() as res:
        manifest = await _manifest(site, res, 0)
    digest = next(d for d in manifest.entries if d is not None)
    next((copy / "dd").rglob(digest.hex())).unlink()
    async with (
        node_process_async(copy) as spare,
        PoolClient(spare.url, TOKEN, "dd") as pool,
    ):
        yield pool


def _onto(site: Site, vm: Vm) -> tuple[tuple[str, str], ...]:
    """The restore point's disks onto ``vm``'s first disks, in order."""
    return tuple(zip([d.disk_id for d in site.point], [d.id for d in vm.disks[:2]], strict=True))


async def _refusal_cases(
    site: Site, res: RestoreResources
) -> list[tuple[set[str], VmRestoreRequest]]:
    src = [d.disk_id for d in site.point]
    big, one = site.vm(1), site.vm(2)
    ghost = msgspec.structs.replace(big, id=VmId("no-such-vm"))
    twice = ((src[0], big.disks[0].id), (src[1], big.disks[0].id))
    huge = tuple(msgspec.structs.replace(d, size_bytes=64 * MIB) for d in site.point)
    gone = (site.point[0], msgspec.structs.replace(site.point[1], manifest_version="gone"))
    snap = VmRestoreOptions(snapshot_before=True)
    other, no_agent = site.vm(7), site.vm(3)
    return [
        ({r.REFUSE_TARGET_VM_GONE}, _request(site, ghost)),
        ({r.REFUSE_TARGET_NOT_ON_CEPH}, _request(site, other, mapping=_onto(site, other))),
        ({r.REFUSE_GUEST_AGENT_DOWN},
         _request(site, no_agent, mapping=_onto(site, no_agent), options=snap)),
        ({r.MAPPING_TARGET_TWICE}, _request(site, big, mapping=twice)),
        ({r.REFUSE_TARGET_DISK_SMALLER},
         _request(site, big, mapping=_onto(site, big), disks=huge)),
        # one disk for two: the second source disk has no target either
        ({r.REFUSE_TARGET_TOO_FEW_DISKS, r.REFUSE_TARGET_DISK_GONE},
         _request(site, one, mapping=((src[0], one.disks[0].id),))),
        ({r.REFUSE_POINT_INCOMPLETE}, _request(site, big, mapping=_onto(site, big), disks=gone)),
    ]  # fmt: skip


async def test_each_refusal_is_found_before_anything_is_written(site: Site, tmp_path: Path) -> None:
    big = site.vm(1)
    await site.patch(big, {"state": "running", "guest_agent": {"installed": True, "running": True}})
    images = [site.image_name(big, i) for i in range(3)]
    before = [_digest(site.read(name)) for name in images]
    async with site.resources() as res:
        cases = await _refusal_cases(site, res)
        outcomes = [await restore_vm(request, res) for _, request in cases]
        states = (
            ("suspended", r.REFUSE_TARGET_SUSPENDED),
            ("paused", r.REFUSE_TARGET_PAUSED),
            ("shelved", r.REFUSE_TARGET_SHELVED),
        )
        for state, code in states:
            await site.patch(big, {"state": state})
            cases.append(({code}, _request(site, big, mapping=_onto(site, big))))
            outcomes.append(await restore_vm(cases[-1][1], res))
        await site.patch(big, {"state": "running"})
        async with _pool_missing_a_chunk(site, tmp_path) as lossy:
            cases.append(
                ({r.REFUSE_POINT_INCOMPLETE}, _request(site, big, mapping=_onto(site, big)))
            )
            outcomes.append(await restore_vm(cases[-1][1], replace(res, pool=lossy)))
    for (codes, _), outcome in zip(cases, outcomes, strict=True):
        assert outcome.status == "refused", outcome
        assert {r.code for r in outcome.refusals} == codes, outcome
    assert "gone" in outcomes[6].message and "not in the pool" in outcomes[-1].message
    assert [_digest(site.read(name)) for name in images] == before
    assert all(site.snaps(name) == [] for name in images)
