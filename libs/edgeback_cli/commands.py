"""The ``edgeback disk`` commands: backup, restore and verify of one RBD disk.

Every input is checked (image, snapshots, node, pool, key, base manifest) before
anything is changed, so a bad command line leaves the cluster and the pool as they were.
Without ``--snap`` a backup takes its own snapshot and keeps it as the base of the next
incremental. Progress goes to stderr; the summary to stdout (JSON with ``--json``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from edgeback_blocks.chunk import Compression
from edgeback_blocks.ids import ChunkDigest, ManifestId, PoolId, PoolKey
from edgeback_blocks.keys import ClientKeys
from edgeback_blocks.manifest import BackupType, Manifest, ManifestHeader, created_ms
from edgeback_blocks.pipeline import (
    BackupOptions,
    DedupMode,
    RestoreOptions,
    restore_disk,
    verify_disk,
)
from edgeback_blocks.pipeline.checkpointed import backup_checkpointed
from edgeback_blocks.pipeline.target import ChunkRecord
from edgeback_blocks.pool_client import DEFAULT_RETRY, PoolClient
from edgeback_blocks.pool_wire import ManifestItem, PoolStatus
from edgeback_blocks.rbd import RbdCluster, RbdImage, RbdPool
from edgeback_cli.display import ProgressDisplay
from edgeback_cli.refs import ImageRef, ManifestRef, PoolLocation, version_name
from edgeback_core.errors import (
    ConflictError,
    InvalidInputError,
    ManifestFormatError,
    NotFoundError,
)
from edgeback_core.retry import OnRetry, RetryPolicy
from edgeback_pools.pool_meta import key_id, read_pool


class PoolHandle(Protocol):
    """What the commands use of a pool: a node client or a local pool directory."""

    async def missing(self, digests: Iterable[ChunkDigest]) -> set[ChunkDigest]: ...
    async def put_chunk(self, digest: ChunkDigest, record: ChunkRecord) -> bool: ...
    async def get_chunk(self, digest: ChunkDigest) -> bytes: ...
    async def put_manifest(self, vm: str, disk: str, version: str, data: bytes) -> bool: ...
    async def get_manifest(self, vm: str, disk: str, version: str) -> bytes: ...
    async def list_manifests(self) -> list[ManifestItem]: ...
    async def put_checkpoint(self, vm: str, disk: str, version: str, data: bytes) -> None: ...
    async def get_checkpoint(self, vm: str, disk: str, version: str) -> bytes | None: ...
    async def delete_checkpoint(self, vm: str, disk: str, version: str) -> None: ...
    async def status(self) -> PoolStatus: ...


class ManifestSource(Protocol):
    """Where committed manifests are read from."""

    async def get_manifest(self, vm: str, disk: str, version: str) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolAccess:
    """Where the pool is (a node URL, or a pool directory) and how to talk to it."""

    location: PoolLocation
    pool: str
    token: str | None
    key: PoolKey | None
    """None for a pool directory: its own ``pool.key`` is used (unused when encrypted)."""
    secret: bytes
    """The pool's secret (``--secret-key-file``): manifest MAC, and every key when encrypted."""
    allow_unauthenticated: bool = False
    """Accept format-1 manifests, which carry no MAC."""
    ca_file: str | None = None
    """CA file that an https node's certificate is verified against."""
    retry: RetryPolicy = DEFAULT_RETRY
    """How a storage node's requests are retried (a worker: until its job's reconnect time)."""
    timeout_s: float = 120.0
    """Bound of each blocking socket operation of a storage node request."""
    on_retry: OnRetry | None = None
    """Told of each retried storage node request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupRequest:
    image: ImageRef
    access: PoolAccess
    ceph_conf: str
    ceph_client: str
    vm: str
    disk: str
    version: str | None
    base: ManifestRef | None
    base_snap: str | None
    backup_type: BackupType
    compression: Compression
    dedup: DedupMode
    streams: int
    uploads: int
    checkpoint_interval_s: float


@contextlib.asynccontextmanager
async def opened_pool(access: PoolAccess) -> AsyncIterator[tuple[PoolHandle, ClientKeys]]:
    """The pool and its keys, after checking the pool exists and the chunk key fits."""
    async with _open(access) as handle:
        status = await handle.status()
        if status.encrypted:
            yield handle, ClientKeys.encrypted_pool(access.secret)
            return
        key = access.key
        if key is None:
            if access.location.directory is None:
                raise InvalidInputError("--key-file is needed with a storage node URL")
            key = PoolKey(read_pool(access.location.directory)[1])
        if status.key_id != key_id(key):
            raise InvalidInputError(
                f"the key file does not belong to pool {status.name!r} "
                f"(key id {key_id(key)}, the pool's is {status.key_id})"
            )
        yield handle, ClientKeys.plain(access.secret, key)


@contextlib.asynccontextmanager
async def _open(access: PoolAccess) -> AsyncIterator[PoolHandle]:
    location = access.location
    if location.directory is not None:
        # imported here: the pool stores cost ~10 ms of start-up that node URLs never need
        from edgeback_pools.local import LocalPool  # noqa: PLC0415

        async with LocalPool.open(location.directory) as local:
            yield local
        return
    if not access.token:
        raise InvalidInputError("no token for the storage node: see --token-env")
    async with PoolClient(
        location.url, access.token, access.pool, connections=32, ca_file=access.ca_file,
        retry=access.retry, timeout_s=access.timeout_s, on_retry=access.on_retry,
    ) as client:  # fmt: skip
        yield client


@contextlib.asynccontextmanager
async def rbd_pool(conf: str, client_id: str, name: str) -> AsyncIterator[RbdPool]:
    async with (
        RbdCluster.connect(conf, client_id, io_threads=8) as cluster,
        cluster.open_pool(name) as pool,
    ):
        yield pool


async def load_manifest(
    ref: ManifestRef, client: PoolHandle, keys: ClientKeys, access: PoolAccess
) -> Manifest:
    """The manifest ``ref`` names, authenticated; it must describe what its name says."""
    legacy = access.allow_unauthenticated
    if ref.path is not None:
        return Manifest.decode(ref.path.read_bytes(), keys.manifest, allow_unauthenticated=legacy)
    return await fetch_manifest(ref, client, keys, allow_unauthenticated=legacy)


async def fetch_manifest(
    ref: ManifestRef,
    client: ManifestSource,
    keys: ClientKeys,
    *,
    allow_unauthenticated: bool = False,
) -> Manifest:
    """The pool's manifest ``vm/disk/version``, authenticated, and of what its name says."""
    data = await client.get_manifest(ref.vm, ref.disk, ref.version)
    manifest = Manifest.decode(data, keys.manifest, allow_unauthenticated=allow_unauthenticated)
    header = manifest.header
    named = (header.vm_id, header.disk_id, header.version or ref.version)
    if named != (ref.vm, ref.disk, ref.version):
        raise ManifestFormatError(
            f"the pool answered {ref} with the manifest of {'/'.join(named)}", ref=str(ref)
        )
    return manifest


def emit(summary: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
        return
    for name, value in summary.items():
        print(f"{name:>16}: {value}")


def note(message: str) -> None:
    print(f"edgeback: {message}", file=sys.stderr, flush=True)


async def run_backup(request: BackupRequest) -> dict[str, Any]:
    ref = request.image
    now = datetime.now(UTC)
    version = request.version or version_name(now)
    async with (
        opened_pool(request.access) as (client, keys),
        rbd_pool(request.ceph_conf, request.ceph_client, ref.pool) as pool,
    ):
        parent = None
        if request.base is not None:
            parent = await load_manifest(request.base, client, keys, request.access)
        _check_parent(parent, ref, request.base_snap)
        snap = await _backup_snapshot(pool, ref, request.base_snap, version)
        async with pool.open_image(ref.image, snapshot=snap) as image:
            header = _header(
                request, ref, snap=snap, size=await image.size(), parent=parent, now=now,
                version=version,
            )  # fmt: skip
            result = await backup_checkpointed(
                image, header=header, pool=client, keys=keys, parent=parent,
                base_snap=request.base_snap, options=_backup_options(request),
            )  # fmt: skip
    if result.resumed:
        note(f"resumed {request.vm}/{request.disk}/{version} from its checkpoint")
    stats = {} if result.stats is None else result.stats.to_dict()
    return {
        "manifest": f"{request.vm}/{request.disk}/{version}",
        "image": str(ImageRef(ref.pool, ref.image, snap)),
        "type": header.backup_type.value,
        "adopted": result.stats is None,
        **stats,
    }


def _check_parent(parent: Manifest | None, ref: ImageRef, base_snap: str | None) -> None:
    if parent is None:
        return
    expected = str(ImageRef(ref.pool, ref.image, base_snap))
    if parent.header.image != expected:
        raise InvalidInputError(
            f"the base manifest was taken from {parent.header.image}, not from {expected}: "
            "--base and --base-snap must name the same backup"
        )


async def _backup_snapshot(
    pool: RbdPool, ref: ImageRef, base_snap: str | None, version: str
) -> str:
    """The snapshot to back up: the given one (checked), else a new one named after it."""
    async with pool.open_image(ref.image, read_only=False) as image:
        if base_snap is not None and not await image.snap_exists(base_snap):
            raise NotFoundError(f"base snapshot {ref.pool}/{ref.image}@{base_snap} not found")
        if ref.snap is not None:
            if not await image.snap_exists(ref.snap):
                raise NotFoundError(f"snapshot {ref} not found")
            return ref.snap
        snap = f"edgeback-{version}"
        await image.create_snap(snap)
    note(f"created snapshot {ref.pool}/{ref.image}@{snap} (kept: base of the next incremental)")
    return snap


def _header(
    request: BackupRequest,
    ref: ImageRef,
    *,
    snap: str,
    size: int,
    parent: Manifest | None,
    now: datetime,
    version: str,
) -> ManifestHeader:
    return ManifestHeader(
        vm_id=request.vm,
        disk_id=request.disk,
        image=str(ImageRef(ref.pool, ref.image, snap)),
        image_size=size,
        created_ms=created_ms(now),
        backup_type=BackupType.FULL if parent is None else request.backup_type,
        pool_id=PoolId(request.access.pool),
        parent=None if request.base is None else ManifestId(str(request.base)),
        version=version,
    )


def _backup_options(request: BackupRequest) -> BackupOptions:
    return BackupOptions(
        compression=request.compression,
        dedup=request.dedup,
        streams=request.streams,
        uploads=request.uploads,
        progress=ProgressDisplay("backup", sys.stderr),
        checkpoint_interval_s=request.checkpoint_interval_s,
    )


async def run_restore(
    ref: ManifestRef,
    image_ref: ImageRef,
    access: PoolAccess,
    *,
    ceph: tuple[str, str],
    force: bool,
    streams: int,
    snapshot_before: bool = False,
) -> dict[str, Any]:
    """Restore ``ref`` into ``image_ref``. A failed restore never leaves a half-written
    image that looks usable: an image it created is removed, and with
    ``snapshot_before`` an overwritten image is rolled back to its snapshot."""
    async with opened_pool(access) as (client, keys), rbd_pool(*ceph, image_ref.pool) as pool:
        manifest = await load_manifest(ref, client, keys, access)
        exists = await pool.image_exists(image_ref.image)
        if exists and not force:
            raise ConflictError(
                f"image {image_ref} exists: pass --force to overwrite it with {ref}"
            )
        if not exists:
            await pool.create_image(image_ref.image, manifest.header.image_size)
            note(f"created image {image_ref} ({manifest.header.image_size} bytes)")
        options = RestoreOptions(
            in_flight=max(2, 2 * streams),
            target_is_zero=not exists,
            progress=ProgressDisplay("restore", sys.stderr),
            seal=keys.chunk_seal,
        )
        try:
            async with (
                pool.open_image(image_ref.image, read_only=False) as image,
                _safety_snapshot(image, image_ref, exists and snapshot_before),
            ):
                stats = await restore_disk(
                    manifest, image, source=client, key=keys.digest, options=options
                )
        except BaseException:
            if not exists:
                await pool.remove_image(image_ref.image)
                note(f"removed the partly restored image {image_ref}")
            elif not snapshot_before:
                note(f"{image_ref} is partly overwritten (--snapshot-before rolls back instead)")
            raise
    return {"manifest": str(ref), "image": str(image_ref), **stats.to_dict()}


@contextlib.asynccontextmanager
async def _safety_snapshot(image: RbdImage, ref: ImageRef, wanted: bool) -> AsyncIterator[None]:
    """Snapshot the target before it is overwritten; roll back to it if the restore fails.

    The snapshot is removed either way: after a success it is not needed, after a
    rollback the image holds its old content again.
    """
    if not wanted:
        yield
        return
    snap = f"edgeback-pre-restore-{version_name(datetime.now(UTC))}"
    await image.create_snap(snap)
    note(f"snapshot {ref.pool}/{ref.image}@{snap} taken before overwriting")
    try:
        yield
    except BaseException:
        await image.rollback_to_snap(snap)
        note(f"restore failed: rolled {ref.pool}/{ref.image} back to {snap}")
        raise
    finally:
        await image.remove_snap(snap)


async def run_verify(
    ref: ManifestRef, access: PoolAccess, *, sample: int | None
) -> tuple[bool, dict[str, Any]]:
    async with opened_pool(access) as (client, keys):
        manifest = await load_manifest(ref, client, keys, access)
        report = await verify_disk(
            manifest, source=client, key=keys.digest, sample=sample,
            progress=ProgressDisplay("verify", sys.stderr), seal=keys.chunk_seal,
        )  # fmt: skip
    summary = {
        "manifest": str(ref),
        "chunks": report.chunks,
        "checked": report.checked,
        "bad": [{"digest": b.digest, "indices": list(b.indices), "code": b.code,
                 "message": b.message} for b in report.bad],
        "duration_s": report.duration_s,
    }  # fmt: skip
    return report.ok, summary
