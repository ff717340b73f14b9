"""Backup hosts: self-registration by heartbeat, activation, group authorization.

A worker announces its host with a heartbeat event. The first one creates the host
as registered but inactive; an admin activates it and authorizes user groups. A host
is online while its last heartbeat is younger than the timeout (time is injected).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from edgeback_catalog.access import AuditLog, require_groups, visibility
from edgeback_catalog.documents import host_of
from edgeback_catalog.domain import Actor, BackupHost, Clock, Role
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import (
    AlreadyExistsError,
    HostNotActiveError,
    InvalidInputError,
    NotFoundError,
    UnknownReferenceError,
)
from edgeback_core.ids import BackupHostId


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    host_id: BackupHostId
    hostname: str
    version: str
    capacity_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HostView:
    host: BackupHost
    online: bool


class BackupHosts:
    def __init__(
        self, db: CatalogDb, audit: AuditLog, clock: Clock, *, offline_after: timedelta
    ) -> None:
        self._db = db
        self._audit = audit
        self._clock = clock
        self._offline_after = offline_after

    async def heartbeat(self, beat: Heartbeat) -> BackupHost:
        """Record a heartbeat; the first one of a host registers it (inactive)."""
        if not beat.host_id or not beat.hostname or beat.capacity_bytes < 0:
            raise InvalidInputError("a heartbeat needs a host id, a hostname and capacity >= 0")
        now = self._clock()
        change = {
            "$set": {
                "hostname": beat.hostname,
                "version": beat.version,
                "capacity_bytes": beat.capacity_bytes,
            },
            # $max: a late, redelivered heartbeat never moves last_seen backwards.
            "$max": {"last_seen": now},
            "$setOnInsert": {"active": False, "groups": [], "registered_at": now},
        }
        try:
            doc = await self._db.upsert(Coll.BACKUP_HOSTS, {"_id": beat.host_id}, change)
        except AlreadyExistsError:
            # Two first heartbeats raced on the insert: the other one created it.
            doc = await self._db.upsert(Coll.BACKUP_HOSTS, {"_id": beat.host_id}, change)
        host = host_of(doc)
        if host.registered_at == now and not host.active:
            system = Actor(name=f"host:{beat.host_id}", role=Role.SERVICE)
            await self._audit.record(system, "host.registered", _ref(beat.host_id))
        return host

    async def activate(self, actor: Actor, host_id: BackupHostId) -> BackupHost:
        actor.require_admin("activating a backup host")
        doc = await self._db.update(Coll.BACKUP_HOSTS, {"_id": host_id}, {"$set": {"active": True}})
        if doc is None:
            raise NotFoundError(f"backup host {host_id} not found", host_id=host_id)
        await self._audit.record(actor, "host.activated", _ref(host_id))
        return host_of(doc)

    async def authorize(
        self, actor: Actor, host_id: BackupHostId, groups: Collection[str]
    ) -> BackupHost:
        """Replace the groups allowed to use the host."""
        actor.require_admin("authorizing groups on a backup host")
        checked = await require_groups(self._db, groups)
        doc = await self._db.update(
            Coll.BACKUP_HOSTS, {"_id": host_id}, {"$set": {"groups": sorted(checked)}}
        )
        if doc is None:
            raise NotFoundError(f"backup host {host_id} not found", host_id=host_id)
        shown = {"groups": sorted(checked)}
        await self._audit.record(actor, "host.authorized", _ref(host_id), shown)
        return host_of(doc)

    async def activate_many(
        self, actor: Actor, host_ids: Collection[BackupHostId]
    ) -> list[BackupHost]:
        """Activate several hosts at once: all of them, or none if one is unknown."""
        actor.require_admin("activating backup hosts")
        return [await self.activate(actor, h) for h in await self._require_all(host_ids)]

    async def authorize_many(
        self, actor: Actor, host_ids: Collection[BackupHostId], groups: Collection[str]
    ) -> list[BackupHost]:
        """Authorize the same groups on several hosts: all of them, or none."""
        actor.require_admin("authorizing groups on backup hosts")
        await require_groups(self._db, groups)
        hosts = await self._require_all(host_ids)
        return [await self.authorize(actor, h, groups) for h in hosts]

    async def _require_all(self, host_ids: Collection[BackupHostId]) -> list[BackupHostId]:
        """The distinct ids, after checking every one names a host (nothing changes if not)."""
        wanted = sorted(set(host_ids))
        if not wanted:
            raise InvalidInputError("name at least one backup host", field="host_ids")
        found = await self._db.find(Coll.BACKUP_HOSTS, {"_id": {"$in": wanted}})
        unknown = sorted(set(wanted) - {doc["_id"] for doc in found})
        if unknown:
            raise NotFoundError(f"backup host(s) not found: {unknown}", host_ids=unknown)
        return wanted

    async def get(self, actor: Actor, host_id: BackupHostId) -> HostView:
        doc = await self._db.find_one(Coll.BACKUP_HOSTS, {"_id": host_id, **visibility(actor)})
        if doc is None:
            raise NotFoundError(f"backup host {host_id} not found", host_id=host_id)
        return self._view(host_of(doc))

    async def list(self, actor: Actor) -> list[HostView]:
        docs = await self._db.find(Coll.BACKUP_HOSTS, visibility(actor), sort=(("hostname", 1),))
        return [self._view(host_of(doc)) for doc in docs]

    async def require_active(self, host_id: BackupHostId) -> BackupHost:
        """The host a platform or storage refers to: it must exist and be active."""
        doc = await self._db.find_one(Coll.BACKUP_HOSTS, {"_id": host_id})
        if doc is None:
            raise UnknownReferenceError(f"backup host {host_id} does not exist", host_id=host_id)
        host = host_of(doc)
        if not host.active:
            raise HostNotActiveError(f"backup host {host_id} is not activated", host_id=host_id)
        return host

    def _view(self, host: BackupHost) -> HostView:
        return HostView(host=host, online=host.online(self._clock(), self._offline_after))


def _ref(host_id: str) -> str:
    return f"backup_host/{host_id}"
