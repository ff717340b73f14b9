"""Restores in the catalog: create (returns the verification code), start with the
code, read, list, cancel (S1-S6).

A restore is checked at create against its restore points (``restorerules.check``)
and its backup host (exists, active, visible). Its verification code is returned once
and stored hashed (``restorecodes``). Start judges the code with the clock: a wrong
code changes nothing but the audit log; an expired one ends the restore ``expired``;
the right one is consumed by the same conditional update that moves the state, so it
starts at most one restore. Publishing the worker's command is the caller's
(``restorerpc``), after the state moved. An operator sees (reads, starts, runs, stops)
the restores whose backup host is authorized to one of its groups, whoever made them,
as it sees the restore jobs of that host (``access.host_scope``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import msgspec

from edgeback_catalog import restorecodes as codes
from edgeback_catalog.access import AuditLog, host_scope, new_id, visibility
from edgeback_catalog.domain import Actor, Clock
from edgeback_catalog.hosts import BackupHosts
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restoredocs import (
    Restore,
    newest_page,
    position,
    restore_doc,
    restore_of,
    restore_points,
    sets_visible_to,
    summary_of,
)
from edgeback_catalog.restorejobdocs import disabled_jobs, queued_first, require_ready
from edgeback_catalog.restorestate import (
    INITIAL,
    TERMINAL,
    RestoreState,
    allowed_from,
    cancel_target,
    check_transition,
)
from edgeback_core import restorerules
from edgeback_core.errors import (
    LockBusyError,
    NotFoundError,
    RestoreJobBusyError,
    RestoreNotRunnableError,
    UnknownReferenceError,
    VerificationCodeError,
    VerificationCodeExpiredError,
    VerificationCodeUsedError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import restores as r
from edgeback_core.messages.schedule import Immediate, Manual

DEFAULT_CODE_TTL = timedelta(minutes=10)
RESTORE_HOST = "spec.options.host_id"
"""Where a restore document names its backup host: operators see it by that host."""
_MAX_ATTEMPTS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Created:
    restore: Restore
    code: str


class Restores:
    def __init__(
        self,
        db: CatalogDb,
        audit: AuditLog,
        hosts: BackupHosts,
        clock: Clock,
        *,
        code_ttl: timedelta = DEFAULT_CODE_TTL,
        on_end: Callable[[Restore], Awaitable[object]] | None = None,
    ) -> None:
        """``on_end`` is told of each restore that reached a terminal state, right after
        the transition (the catalog announces ``RestoreFinished``: ``restoreends``)."""
        self.db, self._db, self._audit, self._hosts = db, db, audit, hosts
        self._clock = clock
        self._code_ttl = code_ttl
        self._on_end = on_end

    async def check(self, actor: Actor, spec: r.RestoreSpec) -> list[r.RestorePoint]:
        """Every rule of a restore ``actor`` asks for; its restore points."""
        visible = await sets_visible_to(self._db, actor)
        points = await restore_points(self._db, list(spec.backup_set_ids), visible)
        restorerules.check(spec, [summary_of(p) for p in points], self._clock())
        host = await self._hosts.require_active(BackupHostId(spec.options.host_id))
        if not actor.can_see(host.groups):
            raise UnknownReferenceError(f"backup host {host.id} does not exist", host_id=host.id)
        await self._require_target(actor, spec)
        return points

    async def create(
        self, actor: Actor, spec: r.RestoreSpec, *, job_id: str | None = None
    ) -> Created:
        """A restore ``pending_verification`` and its code (``job_id``: made from that
        restore job, which the caller checked)."""
        points = await self.check(actor, spec)
        rid, now, code = new_id(), self._clock(), codes.new_code()
        restore = Restore(
            id=rid,
            state=INITIAL,
            version=0,
            spec=spec,
            points=tuple(points),
            verification=codes.issue(rid, msgspec.json.encode(spec), now + self._code_ttl, code),
            created_by=actor.name,
            created_at=now,
            updated_at=now,
            due_at=restorerules.once_instant(spec.schedule),
            job_id=job_id,
        )
        await self._db.insert(Coll.RESTORES, restore_doc(restore))
        details: dict[str, Any] = {"points": len(points)}
        if job_id is not None:
            details["job_id"] = job_id
        await self._audit.record(actor, "restore.created", f"restore/{rid}", details)
        return Created(restore=restore, code=code)

    async def _require_target(self, actor: Actor, spec: r.RestoreSpec) -> None:
        """A new path writes into a VM of a platform the actor sees (else it "does not
        exist", as for a backup host); the original path writes where the points came from."""
        new_path = spec.target.new_path
        if new_path is None:
            return
        query = {"_id": new_path.platform_id, **visibility(actor)}
        if await self._db.find_one(Coll.PLATFORMS, query) is None:
            raise UnknownReferenceError(
                f"platform {new_path.platform_id} does not exist",
                platform_id=new_path.platform_id,
            )

    async def get(self, actor: Actor, restore_id: str) -> Restore:
        scope = await host_scope(self._db, actor, RESTORE_HOST)
        doc = await self._db.find_one(Coll.RESTORES, {"_id": restore_id, **scope})
        if doc is None:
            raise NotFoundError(f"restore {restore_id} not found", restore_id=restore_id)
        return restore_of(doc)

    async def by_id(self, restore_id: str) -> Restore:
        """The restore whoever may see it (the worker of its host, the catalog itself)."""
        doc = await self._db.find_one(Coll.RESTORES, {"_id": restore_id})
        if doc is None:
            raise NotFoundError(f"restore {restore_id} not found", restore_id=restore_id)
        return restore_of(doc)

    async def ended(self, restore: Restore) -> None:
        """Tell ``on_end`` of an ended restore again (it announces only what it missed)."""
        if restore.state in TERMINAL and self._on_end is not None:
            await self._on_end(restore)

    async def list(
        self, actor: Actor, match: Mapping[str, Any], limit: int, after: str | None = None
    ) -> tuple[list[Restore], str | None]:
        """One page newest first and the next one's cursor (None: the last page);
        ``match``: the list's filters (``listfilters.restore_filters``)."""
        scope = await host_scope(self._db, actor, RESTORE_HOST)
        # both may name the host: each condition must hold
        query: dict[str, Any] = (
            {"$and": [dict(match), scope]} if match and scope else {**match, **scope}
        )
        limit = max(1, min(limit, 500))
        docs = await newest_page(
            self._db, Coll.RESTORES, query, time_field="created_at", after=after, limit=limit
        )
        found = [restore_of(doc) for doc in docs[:limit]]
        last = found[-1] if len(docs) > limit else None
        return found, (None if last is None else position(last.created_at, last.id))

    async def start(self, actor: Actor, restore_id: str, offered: str) -> Restore:
        """Consume the code and queue (or schedule) the restore; errors change nothing
        but the audit log, except an expired code, which ends the restore."""
        restore = await self.get(actor, restore_id)
        now = self._clock()
        verdict = codes.judge(restore.id, restore.verification, offered, now)
        if verdict is not codes.Verdict.ACCEPTED:
            await self._refuse(actor, restore, verdict)
        target = (
            RestoreState.QUEUED
            if isinstance(restore.spec.schedule, Immediate)
            else RestoreState.SCHEDULED
        )
        check_transition(restore.state, target)
        if restore.job_id is not None:  # a wrong code is refused first: it is audited
            await require_ready(self._db, restore.job_id, restore.id)
        consumed = {
            "verification.used_at": now,
            "verification.code_hash": "",
        }
        after = await self._apply(restore, target, "verified", extra=consumed, unused_code=True)
        if after is None:  # someone else consumed the code first
            await self._refuse(actor, restore, codes.Verdict.USED)
        details = {"to": str(target)}
        await self._audit.record(actor, "restore.verified", f"restore/{restore.id}", details)
        if target is RestoreState.QUEUED:
            await self._first_of_job(after)
        return after

    async def _refuse(self, actor: Actor, restore: Restore, verdict: codes.Verdict) -> NoReturn:
        resource = f"restore/{restore.id}"
        await self._audit.record(actor, "restore.code_refused", resource, {"verdict": str(verdict)})
        if verdict is codes.Verdict.USED:
            raise VerificationCodeUsedError(f"the code of restore {restore.id} was used already")
        if verdict is codes.Verdict.EXPIRED:
            if restore.state is RestoreState.PENDING_VERIFICATION:
                await self.transition(restore.id, RestoreState.EXPIRED, "verification code expired")
            raise VerificationCodeExpiredError(f"the code of restore {restore.id} expired")
        raise VerificationCodeError(f"wrong verification code for restore {restore.id}")

    async def run(self, actor: Actor, restore_id: str) -> Restore:
        """Queue a verified manual restore now; ``restore_not_runnable`` otherwise
        (the conditional update decides between two runs: one queues it). Needs no code,
        so whoever runs it must also see the VM it writes into, as its creator had to."""
        restore = await self.get(actor, restore_id)
        try:
            await self._require_target(actor, restore.spec)
        except UnknownReferenceError:
            raise NotFoundError(f"restore {restore_id} not found", restore_id=restore_id) from None
        if restore.state is RestoreState.SCHEDULED and isinstance(restore.spec.schedule, Manual):
            if restore.job_id is not None:
                await require_ready(self._db, restore.job_id, restore.id)
            after = await self._apply(restore, RestoreState.QUEUED, f"run by {actor.name}")
            if after is not None:
                await self._audit.record(actor, "restore.run", f"restore/{restore.id}")
                await self._first_of_job(after)
                return after
            restore = await self.get(actor, restore_id)
        kind = str(type(restore.spec.schedule).__struct_config__.tag)
        raise RestoreNotRunnableError(
            f"restore {restore.id} is {restore.state} with schedule {kind}: "
            "only a scheduled manual restore is run by hand",
            state=str(restore.state),
            schedule=kind,
        )

    async def _first_of_job(self, queued: Restore) -> None:
        """Two restores of one job verified (or run) at once both pass the busy check
        made before their writes: after its write, the one not queued first of its job
        is cancelled again and refused, so a job never runs two restores."""
        if queued.job_id is None:
            return
        first = await queued_first(self._db, queued.job_id)
        if first in (None, queued.id):
            return
        reason = f"restore_job_busy: restore {first} of its job was queued first"
        await self.transition(queued.id, RestoreState.CANCELLED, reason)
        raise RestoreJobBusyError(
            f"restore job {queued.job_id} has a restore queued or running: {first}",
            job_id=queued.job_id,
            restores=[first],
        )

    async def move_due(
        self, restore: Restore, target: RestoreState, reason: str, token: int
    ) -> Restore | None:
        """``scheduled → queued`` (or ``expired``) for the scheduler holding ``token``:
        conditional on the restore as read and on no newer token having written it;
        None if that lost (another instance, a cancel or a run came first)."""
        extra = {"fence_token": token}
        return await self._apply(restore, target, reason, extra=extra, fence=token)

    async def held_jobs(self, restores: Sequence[Restore]) -> set[str]:
        """The restore jobs among those of ``restores`` that are disabled: their
        scheduled restores wait (``restorejobs``)."""
        return await disabled_jobs(self._db, [x.job_id for x in restores])

    async def cancel(self, actor: Actor, restore_id: str) -> Restore:
        restore = await self.get(actor, restore_id)
        moved = await self.transition(restore.id, cancel_target(restore.state), f"by {actor.name}")
        await self._audit.record(actor, "restore.cancelled", f"restore/{restore.id}")
        return moved

    async def transition(self, restore_id: str, target: RestoreState, reason: str) -> Restore:
        """Move the restore to ``target`` (checked, then conditional on what was read)."""
        for _ in range(_MAX_ATTEMPTS):
            doc = await self._db.find_one(Coll.RESTORES, {"_id": restore_id})
            if doc is None:
                raise NotFoundError(f"restore {restore_id} not found", restore_id=restore_id)
            restore = restore_of(doc)
            check_transition(restore.state, target)
            after = await self._apply(restore, target, reason)
            if after is not None:
                await self.ended(after)
                return after
        raise LockBusyError(f"restore {restore_id} kept changing; try again")

    async def _apply(
        self,
        restore: Restore,
        target: RestoreState,
        reason: str,
        *,
        extra: dict[str, Any] | None = None,
        unused_code: bool = False,
        fence: int | None = None,
    ) -> Restore | None:
        now = self._clock()
        condition: dict[str, Any] = {
            "_id": restore.id,
            "version": restore.version,
            "state": {"$in": sorted(allowed_from(target))},
        }
        if unused_code:
            condition["verification.used_at"] = None
        if fence is not None:  # restores stored before fencing have no token: never newer
            condition["$or"] = [
                {"fence_token": {"$exists": False}},
                {"fence_token": {"$lte": fence}},
            ]
        step = {"from": str(restore.state), "to": str(target), "reason": reason, "at": now}
        fields = {"state": str(target), "updated_at": now, "reason": reason, **(extra or {})}
        if target is RestoreState.QUEUED:  # which of a job's restores came first
            fields["queued_at"] = now
        change = {
            "$set": fields,
            "$inc": {"version": 1},
            "$push": {"history": step},
        }
        doc = await self._db.update(Coll.RESTORES, condition, change)
        return None if doc is None else restore_of(doc)
