"""One disk version end to end: resume from the pool's checkpoint, back up, commit.

What ``edgeback disk backup`` and a worker's VM task both do around
:func:`~edgeback_blocks.pipeline.backup.backup_disk`: a version already committed
under ``version`` from the same source is adopted without reading the disk (a task
redelivered after its commit); otherwise the last checkpoint stored in the pool under
that name is resumed, checkpoints are stored every ``checkpoint_interval_s`` seconds,
the manifest is committed with :func:`~edgeback_blocks.commit.commit_manifest` (which
adopts an equal manifest stored meanwhile) and the checkpoint is removed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import structlog

from edgeback_blocks.commit import ManifestStore, commit_manifest, committed
from edgeback_blocks.keys import ClientKeys
from edgeback_blocks.manifest import Manifest, ManifestHeader
from edgeback_blocks.pipeline.backup import BackupOptions, backup_disk
from edgeback_blocks.pipeline.stats import BackupStats
from edgeback_blocks.pipeline.target import ChunkTarget
from edgeback_blocks.rbd import RbdImage

log = structlog.get_logger(__name__)


class CheckpointedPool(ChunkTarget, ManifestStore, Protocol):
    """What a checkpointed backup needs of a pool (a node client or a local pool)."""

    async def put_checkpoint(self, vm: str, disk: str, version: str, data: bytes) -> None: ...
    async def get_checkpoint(self, vm: str, disk: str, version: str) -> bytes | None: ...
    async def delete_checkpoint(self, vm: str, disk: str, version: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskVersionResult:
    manifest: Manifest
    """What the pool holds under the version name."""
    stats: BackupStats | None
    """None when the version was already committed and adopted without reading."""
    resumed: bool = False
    """True when a checkpoint of an interrupted attempt was resumed."""


async def backup_checkpointed(
    image: RbdImage,
    *,
    header: ManifestHeader,
    pool: CheckpointedPool,
    keys: ClientKeys,
    parent: Manifest | None = None,
    base_snap: str | None = None,
    options: BackupOptions | None = None,
) -> DiskVersionResult:
    """Back up ``image`` into ``pool`` as version ``header.version`` (see module doc)."""
    version = header.version
    vm, disk = header.vm_id, header.disk_id
    done = await committed(pool, version, header, keys.manifest)
    if done is not None:
        log.info("disk.already_committed", vm=vm, disk=disk, version=version)
        return DiskVersionResult(manifest=done, stats=None)

    async def store(data: bytes) -> None:
        await pool.put_checkpoint(vm, disk, version, data)

    checkpoint = await pool.get_checkpoint(vm, disk, version)
    if checkpoint is not None:
        log.info("disk.resuming", vm=vm, disk=disk, version=version)
    opts = dataclasses.replace(
        options or BackupOptions(),
        checkpoint=store,
        seal=keys.chunk_seal,
        manifest_key=keys.manifest,
    )
    result = await backup_disk(
        image, header=header, target=pool, key=keys.digest, base_snap=base_snap,
        parent=parent, resume_from=checkpoint, options=opts,
    )  # fmt: skip
    stored = await commit_manifest(pool, version, result.manifest, keys.manifest)
    await pool.delete_checkpoint(vm, disk, version)
    return DiskVersionResult(
        manifest=stored.manifest, stats=result.stats, resumed=checkpoint is not None
    )
