"""Who may see and change what: the visibility query, the audit log, name rules.

Every write of the catalog records an audit entry (who, what, which resource, when)
after it succeeded. Reads by an operator are filtered by its groups: backup hosts,
platforms and users by their own ``groups`` (``visibility``); what runs on a backup
host (backup and restore jobs, their runs, backup sets and restores, pools) by the
groups the admin authorized on that host (``host_scope``), so taking a group off a
host hides all of it at once. A resource invisible to the caller reads as not found,
so its existence does not leak.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from edgeback_catalog.documents import AuditDoc
from edgeback_catalog.domain import Actor, Clock, GroupName
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import InvalidInputError, UnknownReferenceError

_NAME = re.compile(r"[^\s/\\][^/\\]{0,62}[^\s/\\]|[^\s/\\]")
_TAG = re.compile(r"[A-Za-z0-9_.:\-]{1,40}")


def new_id() -> str:
    return uuid.uuid4().hex


def visibility(actor: Actor) -> dict[str, Any]:
    """The query clause restricting a read to what ``actor`` may see."""
    if actor.sees_everything:
        return {}
    return {"groups": {"$in": sorted(actor.groups)}}


NO_ID = ""
"""Never an id (ids are never empty): an ``$in`` of only it matches nothing, where the
mongoeco server answers an empty ``$in`` with a syntax error."""


async def host_scope(db: CatalogDb, actor: Actor, field: str = "host_id") -> dict[str, Any]:
    """The query clause keeping what runs on a backup host authorized to one of
    ``actor``'s groups (``field``: where the document names its host); admins and
    services see everything."""
    if actor.sees_everything:
        return {}
    hosts = await db.find(Coll.BACKUP_HOSTS, visibility(actor))
    return {field: {"$in": sorted(doc["_id"] for doc in hosts) or [NO_ID]}}


def check_name(name: str, *, field: str = "name") -> str:
    """Display names: 1-64 characters, no slashes, no surrounding spaces."""
    if not _NAME.fullmatch(name):
        raise InvalidInputError(f"{field} {name!r} is not a valid name", field=field)
    return name


def check_tags(tags: Collection[str]) -> tuple[str, ...]:
    bad = [t for t in tags if not _TAG.fullmatch(t)]
    if bad:
        raise InvalidInputError(f"invalid tag(s): {bad!r}", field="tags")
    return tuple(sorted(set(tags)))


async def require_groups(db: CatalogDb, groups: Collection[str]) -> frozenset[GroupName]:
    """The groups, after checking every one exists (``unknown_reference`` otherwise)."""
    wanted = set(groups)
    if not wanted:
        return frozenset()
    found = await db.find(Coll.GROUPS, {"name": {"$in": sorted(wanted)}})
    missing = wanted - {doc["name"] for doc in found}
    if missing:
        raise UnknownReferenceError(f"unknown group(s): {sorted(missing)}", field="groups")
    return frozenset(GroupName(g) for g in wanted)


class AuditLog:
    """Appends who did what to which resource, and reads it back (newest first)."""

    def __init__(self, db: CatalogDb, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record(
        self, actor: Actor, action: str, resource: str, details: Mapping[str, Any] | None = None
    ) -> None:
        await self.record_as(actor.name, str(actor.role), action, resource, details)

    async def record_as(
        self,
        name: str,
        role: str,
        action: str,
        resource: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """An entry for a caller that is no ``Actor`` (a refused broker user)."""
        doc = AuditDoc(
            # time-ordered id: entries written in the same (injected) instant keep order
            _id=f"{time.time_ns():020d}-{new_id()[:8]}",
            at=self._clock(),
            actor=name,
            role=role,
            action=action,
            resource=resource,
        )
        if details:
            doc["details"] = dict(details)
        await self._db.insert(Coll.AUDIT_LOG, doc)

    async def entries(
        self,
        *,
        resource: str | None = None,
        limit: int = 100,
        before: str | None = None,
        match: Mapping[str, Any] | None = None,
    ) -> list[AuditDoc]:
        """Newest first; ``match``: more clauses (``listfilters.audit_filters``)."""
        query: dict[str, Any] = dict(match or {})
        if resource is not None:
            query["resource"] = resource
        if before is not None:
            query["_id"] = {"$lt": before}
        docs = await self._db.find(Coll.AUDIT_LOG, query, sort=(("_id", -1),), limit=limit)
        return [AuditDoc(**doc) for doc in docs]  # type: ignore[typeddict-item]
