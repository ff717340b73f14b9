"""Committing a disk version's manifest so that doing it twice is harmless.

A backup task can die after its manifest reached the pool and before anything else
recorded it; the broker then hands the task to another worker, which backs up the same
snapshot again and commits under the same version name. The two manifests differ
(creation time, and chunk order does not matter but stats do), so the pool refuses the
second with a conflict. Here the second commit *adopts* the stored manifest instead,
after checking it was made from the same source: same VM, disk, image snapshot, size,
pool, type and parent. A different source under that name is a real conflict.
:func:`committed` lets a resumed task find that manifest before reading the disk at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest import Manifest, ManifestHeader
from edgeback_core.errors import ConflictError, NotFoundError


class ManifestStore(Protocol):
    async def put_manifest(self, vm: str, disk: str, version: str, data: bytes) -> bool: ...
    async def get_manifest(self, vm: str, disk: str, version: str) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Committed:
    manifest: Manifest
    """What the pool holds under the name: ours, or the adopted earlier one."""
    adopted: bool


def same_source(a: ManifestHeader, b: ManifestHeader) -> bool:
    """Whether two headers describe a backup of the same snapshot into the same pool."""
    return (
        a.vm_id == b.vm_id
        and a.disk_id == b.disk_id
        and a.image == b.image
        and a.image_size == b.image_size
        and a.pool_id == b.pool_id
        and a.backup_type == b.backup_type
        and a.parent == b.parent
        and a.chunk_size == b.chunk_size
    )


async def committed(
    store: ManifestStore, version: str, expected: ManifestHeader, key: ManifestKey
) -> Manifest | None:
    """The manifest already stored under ``version`` for ``expected``'s source, if any.

    Raises ``ConflictError`` when the name holds a manifest of another source, and
    ``ManifestFormatError`` when it does not authenticate with ``key``."""
    try:
        data = await store.get_manifest(expected.vm_id, expected.disk_id, version)
    except NotFoundError:
        return None
    stored = Manifest.decode(data, key)
    _check_source(stored.header, expected, version)
    return stored


async def commit_manifest(
    store: ManifestStore, version: str, manifest: Manifest, key: ManifestKey
) -> Committed:
    """Store ``manifest`` under ``version``, or adopt the one of the same source there."""
    header = manifest.header
    try:
        await store.put_manifest(header.vm_id, header.disk_id, version, manifest.encode(key))
    except ConflictError:
        stored = await committed(store, version, header, key)
        if stored is None:  # removed between the two calls: a real conflict to report
            raise
        return Committed(manifest=stored, adopted=True)
    return Committed(manifest=manifest, adopted=False)


def _check_source(stored: ManifestHeader, expected: ManifestHeader, version: str) -> None:
    if not same_source(stored, expected):
        raise ConflictError(
            f"version {version} of {expected.vm_id}/{expected.disk_id} holds a backup of "
            f"{stored.image}, not of {expected.image}",
            version=version,
            stored_image=stored.image,
            image=expected.image,
        )
