"""Platforms (registered edge clouds): register, rename, update, tag, unregister, read.

The Access Key and Secret Key are sealed at rest (``secretbox.py``); reads carry a
masked access key and never the secret. Before a platform is stored (registered, or
its address, keys or default host changed), a worker of its default backup host makes
a signed call to it (``probes.py``): wrong address or keys are refused with the
worker's reason and nothing is stored. Browsing (host → VM → disks) goes through the
same host. A catalog built without a probe stores what it is told (its own tests of
the storage rules); the service always wires the worker probe.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from edgeback_catalog.access import (
    AuditLog,
    check_name,
    check_tags,
    new_id,
    require_groups,
    visibility,
)
from edgeback_catalog.documents import PlatformDoc, platform_of
from edgeback_catalog.domain import (
    Actor,
    Clock,
    Platform,
    PlatformCredentials,
    PlatformId,
)
from edgeback_catalog.hosts import BackupHosts
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.probes import ResourceProbe
from edgeback_catalog.secretbox import SecretBox, mask
from edgeback_core.errors import (
    InvalidInputError,
    NotFoundError,
    PlatformInUseError,
    UnavailableError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import worker as w
from edgeback_platform.models import HypervisorId

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_KEY = re.compile(r"[\x21-\x7e]{4,256}")
_KEYWORD = re.compile(r"[^\x00-\x1f]{1,128}")
V = TypeVar("V")
_CONNECTION = ("address", "port", "ssl", "access_key", "secret_key", "default_host_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformDraft:
    name: str
    address: str
    port: int
    ssl: bool
    access_key: str
    secret_key: str
    default_host_id: BackupHostId
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformChanges:
    """Settings to change; ``None`` leaves a setting as it is."""

    address: str | None = None
    port: int | None = None
    ssl: bool | None = None
    access_key: str | None = None
    secret_key: str | None = None
    default_host_id: BackupHostId | None = None
    groups: tuple[str, ...] | None = None


def check_address(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not _HOSTNAME.fullmatch(address):
            raise InvalidInputError(f"{address!r} is not a host name or IP address") from None
    return address


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise InvalidInputError(f"port {port} is out of range 1-65535", field="port")
    return port


def check_key(key: str, field: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidInputError(f"{field} must be 4-256 printable characters", field=field)
    return key


def check_keyword(keyword: str | None) -> str | None:
    """A search keyword: None or blank means none; at most 128 printable characters."""
    if keyword is None or not keyword.strip():
        return None
    if not _KEYWORD.fullmatch(keyword.strip()):
        raise InvalidInputError("keyword must be 1-128 printable characters", field="keyword")
    return keyword.strip()


class Platforms:
    def __init__(
        self,
        db: CatalogDb,
        audit: AuditLog,
        hosts: BackupHosts,
        box: SecretBox,
        clock: Clock,
        *,
        probe: ResourceProbe | None = None,
    ) -> None:
        self._db, self._audit, self._hosts = db, audit, hosts
        self._box, self._clock, self._probe = box, clock, probe

    async def register(self, actor: Actor, draft: PlatformDraft) -> Platform:
        actor.require_admin("registering a platform")
        check_name(draft.name)
        check_address(draft.address)
        check_port(draft.port)
        check_key(draft.access_key, "access_key")
        check_key(draft.secret_key, "secret_key")
        tags = check_tags(draft.tags)
        groups = await require_groups(self._db, draft.groups)
        await self._hosts.require_active(draft.default_host_id)
        access = w.PlatformAccess(
            address=draft.address,
            port=draft.port,
            ssl=draft.ssl,
            access_key=draft.access_key,
            secret_key=draft.secret_key,
        )
        checked = await self._check(draft.default_host_id, access)
        pid, now = PlatformId(new_id()), self._clock()
        doc = PlatformDoc(
            _id=pid,
            name=draft.name,
            address=draft.address,
            port=draft.port,
            ssl=draft.ssl,
            access_key_sealed=self._box.seal(draft.access_key, context=_ctx(pid, "access_key")),
            access_key_masked=mask(draft.access_key),
            secret_key_sealed=self._box.seal(draft.secret_key, context=_ctx(pid, "secret_key")),
            default_host_id=draft.default_host_id,
            tags=list(tags),
            groups=sorted(groups),
            created_at=now,
            updated_at=now,
        )
        await self._db.insert(Coll.PLATFORMS, doc)
        details = {"name": draft.name} | checked
        await self._audit.record(actor, "platform.registered", _ref(pid), details)
        return platform_of(dict(doc))

    async def rename(self, actor: Actor, pid: PlatformId, name: str) -> Platform:
        actor.require_admin("renaming a platform")
        platform = await self._change(pid, {"name": check_name(name)})
        await self._audit.record(actor, "platform.renamed", _ref(pid), {"name": name})
        return platform

    async def update(self, actor: Actor, pid: PlatformId, changes: PlatformChanges) -> Platform:
        actor.require_admin("updating a platform")
        fields = await self._fields_of(pid, changes)
        if not fields:
            return await self.get(actor, pid)
        checked = await self._recheck(pid, changes)
        platform = await self._change(pid, fields)
        shown = sorted(k for k in fields if not k.endswith("_sealed"))
        details = {"fields": shown} | checked
        await self._audit.record(actor, "platform.updated", _ref(pid), details)
        return platform

    async def set_tags(self, actor: Actor, pid: PlatformId, tags: Collection[str]) -> Platform:
        actor.require_admin("tagging a platform")
        checked = check_tags(tags)
        platform = await self._change(pid, {"tags": list(checked)})
        await self._audit.record(actor, "platform.tagged", _ref(pid), {"tags": list(checked)})
        return platform

    async def unregister(self, actor: Actor, pid: PlatformId) -> None:
        """Remove a platform and its Ceph storages; refused while jobs use it."""
        actor.require_admin("unregistering a platform")
        await self.get(actor, pid)
        jobs = await self._db.find(Coll.JOBS, {"platform_ids": pid}, limit=5)
        if jobs:
            names = [str(job.get("name") or job["_id"]) for job in jobs]
            raise PlatformInUseError(
                f"platform {pid} is used by job(s) {', '.join(names)}", jobs=names
            )
        for storage in await self._db.find(Coll.CEPH_STORAGES, {"platform_id": pid}):
            await self._db.delete(Coll.CEPH_STORAGES, {"_id": storage["_id"]})
        await self._db.delete(Coll.PLATFORMS, {"_id": pid})
        await self._audit.record(actor, "platform.unregistered", _ref(pid))

    async def get(self, actor: Actor, pid: PlatformId) -> Platform:
        doc = await self._db.find_one(Coll.PLATFORMS, {"_id": pid, **visibility(actor)})
        if doc is None:
            raise NotFoundError(f"platform {pid} not found", platform_id=pid)
        return platform_of(doc)

    async def list(self, actor: Actor, *, tag: str | None = None) -> list[Platform]:
        query = visibility(actor) | ({"tags": tag} if tag else {})
        docs = await self._db.find(Coll.PLATFORMS, query, sort=(("name", 1),))
        return [platform_of(doc) for doc in docs]

    async def credentials(self, actor: Actor, pid: PlatformId) -> PlatformCredentials:
        """The keys in clear, for a service about to call the platform."""
        actor.require_service("reading platform credentials")
        return self._keys(pid, await self._doc(pid))

    async def browse(
        self,
        actor: Actor,
        pid: PlatformId,
        *,
        keyword: str | None = None,
        hypervisor_id: HypervisorId | None = None,
    ) -> w.PlatformInventory:
        """Physical hosts → VMs → disks as the default backup host sees them now;
        ``keyword`` matches VM names and ids. Anyone who sees the platform may browse."""
        platform = await self.get(actor, pid)
        keys = self._keys(pid, await self._doc(pid))
        request = w.PlatformInventoryRequest(
            access=w.PlatformAccess(
                address=platform.address,
                port=platform.port,
                ssl=platform.ssl,
                access_key=keys.access_key,
                secret_key=keys.secret_key,
            ),
            keyword=check_keyword(keyword),
            host_id=hypervisor_id or None,
        )
        if self._probe is None:
            raise UnavailableError("this catalog has no backup host probe: cannot browse")
        return await self._probe.inventory(platform.default_host_id, request)

    async def _check(self, host_id: BackupHostId, access: w.PlatformAccess) -> dict[str, str]:
        """Ask a worker of ``host_id`` to call the platform; its refusal propagates."""
        if self._probe is None:
            return {}
        checked = await self._probe.check_platform(host_id, w.PlatformCheck(access=access))
        return {"checked_from": checked.checked_from, "platform_version": checked.version}

    async def _recheck(self, pid: PlatformId, changes: PlatformChanges) -> dict[str, str]:
        """Check again when what reaches the platform changes (address, keys, host)."""
        if all(getattr(changes, name) is None for name in _CONNECTION):
            return {}
        doc = await self._doc(pid)
        keys = self._keys(pid, doc)
        access = w.PlatformAccess(
            address=_new(changes.address, doc["address"]),
            port=_new(changes.port, doc["port"]),
            ssl=_new(changes.ssl, doc["ssl"]),
            access_key=_new(changes.access_key, keys.access_key),
            secret_key=_new(changes.secret_key, keys.secret_key),
        )
        host = _new(changes.default_host_id, BackupHostId(doc["default_host_id"]))
        return await self._check(host, access)

    async def _doc(self, pid: PlatformId) -> dict[str, Any]:
        doc = await self._db.find_one(Coll.PLATFORMS, {"_id": pid})
        if doc is None:
            raise NotFoundError(f"platform {pid} not found", platform_id=pid)
        return doc

    def _keys(self, pid: PlatformId, doc: dict[str, Any]) -> PlatformCredentials:
        return PlatformCredentials(
            platform_id=pid,
            access_key=self._box.open(doc["access_key_sealed"], context=_ctx(pid, "access_key")),
            secret_key=self._box.open(doc["secret_key_sealed"], context=_ctx(pid, "secret_key")),
        )

    async def _fields_of(self, pid: PlatformId, changes: PlatformChanges) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if changes.address is not None:
            fields["address"] = check_address(changes.address)
        if changes.port is not None:
            fields["port"] = check_port(changes.port)
        if changes.ssl is not None:
            fields["ssl"] = changes.ssl
        if changes.access_key is not None:
            key = check_key(changes.access_key, "access_key")
            fields["access_key_sealed"] = self._box.seal(key, context=_ctx(pid, "access_key"))
            fields["access_key_masked"] = mask(key)
        if changes.secret_key is not None:
            key = check_key(changes.secret_key, "secret_key")
            fields["secret_key_sealed"] = self._box.seal(key, context=_ctx(pid, "secret_key"))
        if changes.default_host_id is not None:
            await self._hosts.require_active(changes.default_host_id)
            fields["default_host_id"] = changes.default_host_id
        if changes.groups is not None:
            fields["groups"] = sorted(await require_groups(self._db, changes.groups))
        return fields

    async def _change(self, pid: PlatformId, fields: dict[str, Any]) -> Platform:
        change = {"$set": {**fields, "updated_at": self._clock()}}
        doc = await self._db.update(Coll.PLATFORMS, {"_id": pid}, change)
        if doc is None:
            raise NotFoundError(f"platform {pid} not found", platform_id=pid)
        return platform_of(doc)


def _new(change: V | None, current: V) -> V:
    return current if change is None else change


def _ctx(pid: str, field: str) -> str:
    return f"platforms/{pid}/{field}"


def _ref(pid: str) -> str:
    return f"platform/{pid}"
