"""Rebuild backup sets and disk versions from a pool's manifests (X4).

The manifests were read and checked (MAC, checksum, stored name) by whoever holds the
pool's secret (``edgeback catalog import``, on a backup host); the catalog never sees
the secret. Disks of one VM stored under one version name make one backup set. Ids
derive from (pool, VM, version[, disk]), so importing twice adds nothing. Imports go
only into a catalog without backup sets of its own runs: merging a pool into a live
catalog would duplicate the sets its runs recorded under other ids.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec

from edgeback_catalog.access import AuditLog
from edgeback_catalog.backupdocs import disk_version_id
from edgeback_catalog.domain import Actor, Clock
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import AlreadyExistsError, CatalogNotEmptyError, NameTakenError
from edgeback_core.ids import derived_id
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.messages.restores import ImportedDisk
from edgeback_core.messages.runs import DiskStats, VmRef

IMPORTED = "imported"
"""The ``run_id`` and ``job_id`` of an imported backup set (the pool does not know them)."""


class PoolImport:
    def __init__(self, db: CatalogDb, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock

    async def run(self, actor: Actor, pool: PoolRef, disks: list[ImportedDisk]) -> tuple[int, int]:
        """(backup sets added, disk versions added)."""
        actor.require_admin("importing a pool into the catalog")
        own = await self._db.count(Coll.BACKUP_SETS, {"imported": {"$ne": True}})
        if own:
            raise CatalogNotEmptyError(
                f"the catalog holds {own} backup sets of its own runs: import needs an empty one",
                backup_sets=own,
            )
        groups: dict[tuple[str, str], list[ImportedDisk]] = defaultdict(list)
        for disk in disks:
            groups[(disk.vm_id, disk.version)].append(disk)
        sets_added = versions_added = 0
        for (vm_id, version), members in sorted(groups.items()):
            set_id = derived_id("imported_set", pool.node_url, pool.name, vm_id, version)
            sets_added += await self._upsert(Coll.BACKUP_SETS, set_id, self._set(pool, members))
            for disk in members:
                doc = self._version(set_id, disk)
                versions_added += await self._upsert(Coll.DISK_VERSIONS, doc.pop("_id"), doc)
        details = {"pool": pool.name, "sets": sets_added, "disk_versions": versions_added}
        await self._audit.record(actor, "catalog.imported", f"pool/{pool.name}", details)
        return sets_added, versions_added

    async def _upsert(self, coll: Coll, doc_id: str, fields: dict[str, Any]) -> int:
        """1 if this call stored the document, 0 if it was there (a repeated import)."""
        try:
            await self._db.insert(coll, {"_id": doc_id, **fields})
        except (AlreadyExistsError, NameTakenError):
            return 0
        return 1

    def _set(self, pool: PoolRef, members: list[ImportedDisk]) -> dict[str, Any]:
        first = min(members, key=lambda d: d.created_ms)
        vm = VmRef(platform_id="", vm_id=first.vm_id, name=first.vm_id)
        return {
            "run_id": IMPORTED,
            "job_id": IMPORTED,
            "vm_id": first.vm_id,
            "vm": msgspec.to_builtins(vm),
            "backup_type": first.backup_type,
            "pool": msgspec.to_builtins(pool),
            "taken_at": _at(first.created_ms),
            "base_backup_set_id": None,
            "complete": True,
            "disk_count": len(members),
            "created_at": self._clock(),
            "imported": True,
            "version_name": first.version,
        }

    def _version(self, set_id: str, disk: ImportedDisk) -> dict[str, Any]:
        return {
            "_id": disk_version_id(set_id, disk.disk_id),
            "backup_set_id": set_id,
            "run_id": IMPORTED,
            "vm_id": disk.vm_id,
            "disk_id": disk.disk_id,
            "manifest_name": f"{disk.vm_id}/{disk.disk_id}",
            "manifest_version": disk.version,
            "size_bytes": disk.image_size,
            "stats": msgspec.to_builtins(DiskStats()),
            "snapshot_name": disk.image.rpartition("@")[2],
            "snapshot_kept": False,
            "committed_at": _at(disk.created_ms),
            "imported": True,
        }


def _at(created_ms: int) -> datetime:
    return datetime.fromtimestamp(created_ms / 1000, tz=UTC)
