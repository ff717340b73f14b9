"""The catalog's door: every RPC and every heartbeat passes here before its handler.

The caller is the broker user RabbitMQ validated (``rpc_caller()``, ``Envelope.user_id``),
mapped to a principal by ``principals``; the request's ``actor`` only names the end
user the API speaks for. A refusal answers ``permission_denied`` and is written to the
audit log (action ``access.denied``) with the broker user and what the request claimed;
so is a ``permission_denied`` of a handler (an operator asking for an admin's right).
Handlers read the admitted caller with :func:`current_actor`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, NoReturn

import msgspec
import structlog

from edgeback_catalog.access import AuditLog
from edgeback_catalog.domain import Actor, Role, UserName
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.principals import Identities, Kind, Principal, Scope, judge, rule_of
from edgeback_catalog.routes import Route
from edgeback_catalog.users import Users
from edgeback_core.bus.port import Envelope
from edgeback_core.bus.rpc import rpc_caller
from edgeback_core.errors import NotFoundError, PermissionDeniedError
from edgeback_core.ids import BackupHostId

log = structlog.get_logger(__name__)

DENIED = "access.denied"

_actor: ContextVar[Actor] = ContextVar("edgeback_catalog_actor")


def current_actor() -> Actor:
    """Who the RPC being answered is for, as the gate admitted it."""
    return _actor.get()


_CATALOG_EVENTS = frozenset({"RunFinished", "RunSkipped", "RestoreFinished"})
"""Run and restore events only the catalog publishes."""
_RESTORING = frozenset({"queued", "running", "cancelling"})
"""States of a restore whose host reads the target platform's credentials."""


class Gate:
    def __init__(self, db: CatalogDb, audit: AuditLog, users: Users, ids: Identities) -> None:
        self._db, self._audit, self._users, self._ids = db, audit, users, ids

    def guard(self, route: Route) -> Route:
        """``route`` with its handler behind the gate."""

        async def guarded(request: Any) -> msgspec.Struct:
            actor = await self.admit(route.name, request)
            _actor.set(actor)  # the bus answers each request in a task of its own
            try:
                return await route.handler(request)
            except PermissionDeniedError as exc:  # the user's role or groups fall short
                details = {"reason": exc.message, "broker_user": rpc_caller()}
                await self._audit.record(actor, DENIED, f"rpc/{route.name}", details)
                raise

        return Route(route.name, route.request_type, guarded)

    async def admit(self, rpc: str, request: msgspec.Struct) -> Actor:
        """The actor ``request`` from the current RPC caller is answered for."""
        principal = self._ids.principal_of(rpc_caller())
        ref = getattr(request, "actor", None)
        user, role = getattr(ref, "user", None), getattr(ref, "role", None)
        claim = {"claimed_user": user, "claimed_role": role}
        verdict = judge(principal, rule_of(rpc), user=user, role=role)
        if verdict.refused:
            await self._refuse(principal, f"rpc/{rpc}", verdict.refused, claim)
        if verdict.user is not None:
            try:
                return await self._users.actor_of(UserName(verdict.user))
            except NotFoundError:
                await self._refuse(principal, f"rpc/{rpc}", "no such user", claim)
        if verdict.scope is not None and not await self._owns(principal, verdict.scope, request):
            await self._refuse(principal, f"rpc/{rpc}", f"not this host's {verdict.scope}", claim)
        return Actor(name=principal.broker_user, role=Role.SERVICE)

    async def heartbeat(self, envelope: Envelope, host_id: str) -> None:
        """Refuse (and audit) a heartbeat not sent by the host it names."""
        principal = self._ids.principal_of(envelope.user_id)
        if principal.kind is not Kind.TEST and principal.host_id != host_id:
            claim = {"claimed_host": host_id}
            await self._refuse(principal, "event/host.heartbeat", "not this host's id", claim)

    async def run_event(self, envelope: Envelope, run_id: str | None, kind: str) -> None:
        """Refuse (and audit) a run event not sent by the catalog or by the backup host
        of its run: a host speaks only for its own runs, and never ends a run or skips
        a start (``RunFinished``, ``RunSkipped``: the catalog's alone)."""
        claim = {"claimed_run": run_id, "run_event": kind}
        await self._event(envelope, kind, claim, lambda: self._host_of(Coll.RUNS, run_id))

    async def restore_event(self, envelope: Envelope, restore_id: str, kind: str) -> None:
        """The same for a restore event: from the catalog, or the backup host of its
        restore (``RestoreFinished``: the catalog's alone)."""
        claim = {"claimed_restore": restore_id, "restore_event": kind}
        await self._event(envelope, kind, claim, lambda: self._restore_host(restore_id))

    async def _event(
        self,
        envelope: Envelope,
        kind: str,
        claim: dict[str, Any],
        host_of: Callable[[], Awaitable[str | None]],
    ) -> None:
        principal = self._ids.principal_of(envelope.user_id)
        if principal.kind in (Kind.CATALOG, Kind.TEST):
            return
        if principal.kind is not Kind.HOST or kind in _CATALOG_EVENTS:
            await self._refuse(principal, f"event/{kind}", "not a sender of this event", claim)
        if await host_of() != principal.host_id:
            owner = "run" if "claimed_run" in claim else "restore"
            await self._refuse(principal, f"event/{kind}", f"not this host's {owner}", claim)

    async def _restore_host(self, restore_id: str | None) -> str | None:
        restore = await self._restore(restore_id)
        return None if restore is None else str(restore["spec"]["options"]["host_id"])

    async def _owns(self, principal: Principal, scope: Scope, request: msgspec.Struct) -> bool:
        host = principal.host_id
        if scope is Scope.ANY:
            return True
        if scope is Scope.RUN:
            return await self._host_of(Coll.RUNS, getattr(request, "run_id", None)) == host
        if scope is Scope.JOB:
            return await self._host_of(Coll.JOBS, getattr(request, "job_id", None)) == host
        if scope is Scope.RESTORE:
            return await self._restore_host(getattr(request, "restore_id", None)) == host
        if scope is Scope.BACKUP_SET:
            set_id = getattr(request, "backup_set_id", None)
            found = (
                None
                if set_id is None
                else await self._db.find_one(Coll.BACKUP_SETS, {"_id": set_id})
            )
            return found is not None and await self._host_of(Coll.JOBS, found["job_id"]) == host
        platform_id = getattr(request, "platform_id", None)
        return host is not None and await self._serves_platform(host, platform_id)

    async def _host_of(self, coll: Coll, doc_id: str | None) -> str | None:
        doc = None if doc_id is None else await self._db.find_one(coll, {"_id": doc_id})
        return None if doc is None else str(doc["host_id"])

    async def _restore(self, restore_id: str | None) -> dict[str, Any] | None:
        return (
            None
            if restore_id is None
            else await self._db.find_one(Coll.RESTORES, {"_id": restore_id})
        )

    async def _serves_platform(self, host: BackupHostId, platform_id: str | None) -> bool:
        """The platform's default backup host, the target of one of its jobs, or the
        backup host of a restore into it that is under way."""
        if platform_id is None:
            return False
        found = await self._db.find_one(Coll.PLATFORMS, {"_id": platform_id})
        if found is None:
            return False
        if found["default_host_id"] == host:
            return True
        if await self._db.count(Coll.JOBS, {"platform_ids": platform_id, "host_id": host}):
            return True
        live = {"spec.options.host_id": host, "state": {"$in": sorted(_RESTORING)}}
        into = (
            {"points.vm.platform_id": platform_id, "spec.target.new_path": None},
            {"spec.target.new_path.platform_id": platform_id},
        )
        return any([await self._db.count(Coll.RESTORES, {**live, **q}) > 0 for q in into])

    async def _refuse(
        self, principal: Principal, resource: str, reason: str, claim: dict[str, Any]
    ) -> NoReturn:
        details = {"reason": reason, **{k: v for k, v in claim.items() if v is not None}}
        user, kind = principal.broker_user, str(principal.kind)
        await self._audit.record_as(user, kind, DENIED, resource, details)
        log.warning("catalog.access_denied", broker_user=user, resource=resource, **details)
        raise PermissionDeniedError(f"{resource}: {reason}", broker_user=user)
