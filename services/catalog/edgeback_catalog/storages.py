"""Ceph storages registered under a platform: where its VM disks live as RBD images.

A storage names its platform, the backup host that reaches the cluster, the client
id, ceph.conf path and pool, and the three RBD name templates. The catalog checks the
shape of every field and its references, then a worker of the storage's backup host
checks the rest from there (``probes.py``: conf readable, connect as the client id,
pool present, templates valid); a refusal carries the worker's code and stores
nothing. A storage is visible to whoever sees its platform.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeback_catalog.access import AuditLog, check_name, new_id, visibility
from edgeback_catalog.documents import storage_doc, storage_of
from edgeback_catalog.domain import (
    DEFAULT_CEPH_CLIENT,
    DEFAULT_CEPH_CONF,
    Actor,
    CephStorage,
    Clock,
    PlatformId,
    StorageId,
)
from edgeback_catalog.hosts import BackupHosts
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.probes import ResourceProbe
from edgeback_core.errors import InvalidInputError, NotFoundError, UnknownReferenceError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import worker as w
from edgeback_platform.templates import RbdTemplates

_POOL = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_CLIENT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PATH = re.compile(r"/[^\x00]{0,4095}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageDraft:
    platform_id: PlatformId
    name: str
    host_id: BackupHostId
    pool: str
    client_id: str = DEFAULT_CEPH_CLIENT
    conf_path: str = DEFAULT_CEPH_CONF
    volume_template: str = "{volume_id}"
    snapshot_template: str = "{snapshot_id}"
    instance_template: str = "{instance_id}_disk"
    rbd_client: str = "librbd"


def _check_shape(draft: StorageDraft) -> RbdTemplates:
    check_name(draft.name)
    if not _POOL.fullmatch(draft.pool):
        raise InvalidInputError(f"pool {draft.pool!r} is not a valid Ceph pool name")
    if not _CLIENT.fullmatch(draft.client_id):
        raise InvalidInputError(f"client id {draft.client_id!r} is not valid")
    if not _PATH.fullmatch(draft.conf_path) or ".." in draft.conf_path.split("/"):
        raise InvalidInputError(f"conf path {draft.conf_path!r} must be an absolute path")
    if draft.rbd_client not in ("librbd", "krbd"):
        raise InvalidInputError(f"rbd client {draft.rbd_client!r} is not librbd or krbd")
    return RbdTemplates(
        volume=draft.volume_template,
        snapshot=draft.snapshot_template,
        instance=draft.instance_template,
    )


class CephStorages:
    def __init__(
        self,
        db: CatalogDb,
        audit: AuditLog,
        hosts: BackupHosts,
        clock: Clock,
        *,
        probe: ResourceProbe | None = None,
    ) -> None:
        self._db, self._audit, self._hosts, self._clock = db, audit, hosts, clock
        self._probe = probe

    async def add(self, actor: Actor, draft: StorageDraft) -> CephStorage:
        actor.require_admin("adding Ceph storage")
        templates = _check_shape(draft)
        platform = await self._db.find_one(Coll.PLATFORMS, {"_id": draft.platform_id})
        if platform is None:
            raise UnknownReferenceError(
                f"platform {draft.platform_id} does not exist", platform_id=draft.platform_id
            )
        await self._hosts.require_active(draft.host_id)
        checked = await self._check(draft)
        storage = CephStorage(
            id=StorageId(new_id()),
            platform_id=draft.platform_id,
            name=draft.name,
            client_id=draft.client_id,
            conf_path=draft.conf_path,
            host_id=draft.host_id,
            pool=draft.pool,
            templates=templates,
            created_at=self._clock(),
            rbd_client=draft.rbd_client,
        )
        await self._db.insert(Coll.CEPH_STORAGES, storage_doc(storage))
        details = {"platform_id": draft.platform_id} | checked
        await self._audit.record(actor, "storage.added", _ref(storage.id), details)
        return storage

    async def remove(self, actor: Actor, sid: StorageId) -> None:
        actor.require_admin("removing Ceph storage")
        if not await self._db.delete(Coll.CEPH_STORAGES, {"_id": sid}):
            raise NotFoundError(f"storage {sid} not found", storage_id=sid)
        await self._audit.record(actor, "storage.removed", _ref(sid))

    async def get(self, actor: Actor, sid: StorageId) -> CephStorage:
        doc = await self._db.find_one(Coll.CEPH_STORAGES, {"_id": sid})
        if doc is None or not await self._platform_visible(actor, doc["platform_id"]):
            raise NotFoundError(f"storage {sid} not found", storage_id=sid)
        return storage_of(doc)

    async def list(
        self, actor: Actor, platform_id: PlatformId, match: Mapping[str, Any] | None = None
    ) -> list[CephStorage]:
        """By name; ``match``: more clauses (``listfilters.storage_filters``)."""
        if not await self._platform_visible(actor, platform_id):
            raise NotFoundError(f"platform {platform_id} not found", platform_id=platform_id)
        query = {**(match or {}), "platform_id": platform_id}
        docs = await self._db.find(Coll.CEPH_STORAGES, query, sort=(("name", 1),))
        return [storage_of(doc) for doc in docs]

    async def _check(self, draft: StorageDraft) -> dict[str, str]:
        """Ask a worker of the storage's backup host; its refusal propagates."""
        if self._probe is None:
            return {}
        check = w.StorageCheck(
            conf_path=draft.conf_path,
            client_id=draft.client_id,
            pool=draft.pool,
            volume_template=draft.volume_template,
            snapshot_template=draft.snapshot_template,
            instance_template=draft.instance_template,
        )
        checked = await self._probe.check_storage(draft.host_id, check)
        return {"checked_from": checked.checked_from}

    async def _platform_visible(self, actor: Actor, platform_id: str) -> bool:
        query = {"_id": platform_id, **visibility(actor)}
        return await self._db.count(Coll.PLATFORMS, query) == 1


def _ref(sid: str) -> str:
    return f"ceph_storage/{sid}"
