"""Storage pools registered in the catalog: a pool on a storage node, and the backup host
whose workers hold its access files (node token, secret, key) and reach the node.

Registering checks the pool from that host first (``probes.py``: the worker asks the
node for the pool's status with its own token), so a registered pool is one the
host's runs can use; a refusal carries the worker's code (``pool_not_on_node``,
``pool_token_refused``, ``pool_access_missing``, ``storage_node_unreachable``) and
stores nothing. The status (kind, encryption, capacity, free space, counts) is what the
node last said; a refresh asks again and records a failure beside the last good
figures. A pool is visible to whoever sees its backup host. A pool that jobs write to
(same node URL and name) cannot be deleted (``pool_in_use``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edgeback_catalog.access import AuditLog, host_scope, new_id
from edgeback_catalog.domain import (
    Actor,
    Clock,
    PoolCheckFailure,
    PoolFigures,
    PoolId,
    RegisteredPool,
)
from edgeback_catalog.hosts import BackupHosts
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.pooldocs import failure_doc, figures_doc, figures_of, pool_doc, pool_of
from edgeback_catalog.probes import ResourceProbe
from edgeback_core.errors import (
    AlreadyExistsError,
    EdgebackError,
    InvalidInputError,
    NotFoundError,
    PoolInUseError,
    UnavailableError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.jobrules import pool_ref_problems
from edgeback_core.messages import worker as w

MAX_DESCRIPTION = 500


def check_pool_ref(node_url: str, name: str) -> str:
    """The node URL without a trailing slash, after checking it and the pool name."""
    problems = list(pool_ref_problems(node_url, name))
    if problems:
        raise InvalidInputError("; ".join(problems), field="pool")
    return node_url.rstrip("/")


def check_description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION or not all(c.isprintable() for c in text):
        raise InvalidInputError(
            f"description: at most {MAX_DESCRIPTION} printable characters", field="description"
        )
    return text


def jobs_of(node_url: str, name: str) -> dict[str, Any]:
    """The query of the jobs writing to the pool (their URL with or without a slash)."""
    return {
        "spec.target.pool.node_url": {"$in": [node_url, node_url + "/"]},
        "spec.target.pool.name": name,
    }


class Pools:
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

    async def register(
        self, actor: Actor, *, name: str, node_url: str, host_id: BackupHostId, description: str
    ) -> RegisteredPool:
        actor.require_admin("registering a storage pool")
        url = check_pool_ref(node_url, name)
        check_description(description)
        await self._hosts.require_active(host_id)
        taken = await self._db.find_one(Coll.POOLS, {"node_url": url, "name": name})
        if taken is not None:
            raise AlreadyExistsError(
                f"pool {name!r} of {url} is registered already (as {taken['_id']})",
                pool_id=taken["_id"],
            )
        checked = await self._check(host_id, url, name)
        now = self._clock()
        pool = RegisteredPool(
            id=PoolId(new_id()),
            name=name,
            node_url=url,
            host_id=host_id,
            description=description,
            kind=checked.kind if checked else "",
            encrypted=checked.encrypted if checked else False,
            created_at=now,
            created_by=actor.name,
            status=figures_of(checked, now) if checked else PoolFigures(
                capacity_bytes=0, used_bytes=0, free_bytes=0, checked_at=now
            ),
        )  # fmt: skip
        await self._db.insert(Coll.POOLS, pool_doc(pool))  # a racing twin: name_taken
        details = {"name": name, "node_url": url, "host_id": host_id}
        if checked:
            details["checked_from"] = checked.checked_from
        await self._audit.record(actor, "pool.registered", _ref(pool.id), details)
        return pool

    async def get(self, actor: Actor, pool_id: PoolId) -> RegisteredPool:
        scope = await host_scope(self._db, actor)
        doc = await self._db.find_one(Coll.POOLS, {"_id": pool_id, **scope})
        if doc is None:
            raise NotFoundError(f"pool {pool_id} not found", pool_id=pool_id)
        return pool_of(doc)

    async def list(
        self, actor: Actor, *, host_id: str | None = None, node_url: str | None = None
    ) -> list[RegisteredPool]:
        query = await host_scope(self._db, actor)
        if host_id is not None:
            query = {"$and": [query, {"host_id": host_id}]}
        if node_url is not None:
            query = {"$and": [query, {"node_url": node_url.rstrip("/")}]}
        docs = await self._db.find(Coll.POOLS, query, sort=(("node_url", 1), ("name", 1)))
        return [pool_of(doc) for doc in docs]

    async def edit(
        self,
        actor: Actor,
        pool_id: PoolId,
        *,
        description: str | None,
        host_id: BackupHostId | None,
    ) -> RegisteredPool:
        """Change the description, or the backup host (checked from the new host first)."""
        actor.require_admin("editing a storage pool")
        pool = await self.get(actor, pool_id)
        changes: dict[str, Any] = {}
        if description is not None and description != pool.description:
            changes["description"] = check_description(description)
        if host_id is not None and host_id != pool.host_id:
            await self._hosts.require_active(host_id)
            checked = await self._check(host_id, pool.node_url, pool.name)
            changes["host_id"] = host_id
            if checked is not None:
                changes |= _checked_fields(checked, self._clock())
        if not changes:
            return pool
        doc = await self._db.update(Coll.POOLS, {"_id": pool_id}, {"$set": changes})
        if doc is None:
            raise NotFoundError(f"pool {pool_id} not found", pool_id=pool_id)
        shown = {k: v for k, v in changes.items() if k in ("description", "host_id")}
        await self._audit.record(actor, "pool.edited", _ref(pool_id), shown)
        return pool_of(doc)

    async def delete(self, actor: Actor, pool_id: PoolId) -> None:
        """Forget the pool (its data on the node stays); refused while jobs write to it."""
        actor.require_admin("deleting a storage pool")
        pool = await self.get(actor, pool_id)
        jobs = await self._db.count(Coll.JOBS, jobs_of(pool.node_url, pool.name))
        if jobs:
            raise PoolInUseError(
                f"{jobs} job(s) write to pool {pool.name!r} of {pool.node_url}",
                pool_id=pool_id,
                jobs=jobs,
            )
        if not await self._db.delete(Coll.POOLS, {"_id": pool_id}):
            raise NotFoundError(f"pool {pool_id} not found", pool_id=pool_id)
        details = {"name": pool.name, "node_url": pool.node_url}
        await self._audit.record(actor, "pool.deleted", _ref(pool_id), details)

    async def refresh(self, actor: Actor, pool_id: PoolId) -> RegisteredPool:
        """Ask the pool's backup host for its status again. A failure is recorded as
        ``last_error`` (the figures before it stay) and answered like a success: the
        check ran, and what it found is the pool's state."""
        pool = await self.get(actor, pool_id)
        now = self._clock()
        try:
            checked = await self._check(pool.host_id, pool.node_url, pool.name)
            if checked is None:
                raise UnavailableError("this catalog has no backup host probe: cannot refresh")
        except EdgebackError as exc:
            failure = PoolCheckFailure(code=exc.code, message=exc.message, at=now)
            change: dict[str, Any] = {"$set": {"last_error": failure_doc(failure)}}
        else:
            change = {"$set": _checked_fields(checked, now)}
        doc = await self._db.update(Coll.POOLS, {"_id": pool_id}, change)
        if doc is None:
            raise NotFoundError(f"pool {pool_id} not found", pool_id=pool_id)
        refreshed = pool_of(doc)
        failed = refreshed.last_error
        details = {"ok": failed is None} | ({} if failed is None else {"code": failed.code})
        await self._audit.record(actor, "pool.refreshed", _ref(pool_id), details)
        return refreshed

    async def _check(
        self, host_id: BackupHostId, node_url: str, name: str
    ) -> w.PoolStatusChecked | None:
        """Ask a worker of ``host_id``; its refusal propagates (None: no probe)."""
        if self._probe is None:
            return None
        check = w.PoolStatusCheck(node_url=node_url, pool=name)
        return await self._probe.check_pool(host_id, check)


def _checked_fields(checked: w.PoolStatusChecked, at: datetime) -> dict[str, Any]:
    return {
        "kind": checked.kind,
        "encrypted": checked.encrypted,
        "status": figures_doc(figures_of(checked, at)),
        "last_error": None,
    }


def _ref(pool_id: str) -> str:
    return f"pool/{pool_id}"
