"""Putting verified restores on their backup host's run queue: at once (schedule
``immediate``, when the code is right), at their time (``once``, asked by the
scheduler), or when someone runs them (``manual``).

Every way in ends the same: a conditional update moves the restore to ``queued`` (so
of two schedulers, a retry or a run racing the scheduler, one wins and the others are
told ``taken``), then ``PlanRestore`` goes to ``run_routing_key(host_id)`` with message
id ``plan:<restore>``; a broker that refuses it fails the restore with the publish
error's code. The scheduler's calls carry its fencing token: refused as a whole
(``lease_lost``) unless it holds the scheduler lease (checked when something is due: a
tick with nothing due costs one indexed query), and each update is conditional on no
newer token having written the restore. A once restore whose time passed while no
scheduler ran is queued late, unless it is later than the caller's ``late_limit_s``:
then it ends ``expired`` (overwriting disks hours after the chosen time, say in the
working day instead of the night, is a surprise nobody asked for).

A plan sent is recorded (``plan_sent_at``). A catalog that stops between queuing a
restore and sending its plan leaves it queued with none: the scheduler's next call
after ``PLAN_RESEND_AFTER`` sends it again (same message id; planning is idempotent
on the worker), whichever way the restore was queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from edgeback_catalog.access import AuditLog
from edgeback_catalog.documents import utc
from edgeback_catalog.domain import Actor, Clock
from edgeback_catalog.duejobs import EPOCH
from edgeback_catalog.leadership import Leadership
from edgeback_catalog.mongo import Coll
from edgeback_catalog.restoredocs import Restore, restore_of
from edgeback_catalog.restores import Restores
from edgeback_catalog.restorestate import RestoreState
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import run_routing_key
from edgeback_core.errors import EdgebackError, InvalidInputError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import restores as r
from edgeback_core.messages import scheduling as s

PLAN_RESEND_AFTER = timedelta(seconds=60)
"""A queued restore whose plan is not recorded as sent this long after it was queued
(its catalog stopped between the two writes) gets its plan again from the scheduler."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DuePage:
    restores: list[s.DueRestore]
    more: bool
    resent: list[str] = field(default_factory=list)


def due_query(before: datetime, after_due: datetime | None, after_id: str) -> dict[str, Any]:
    """Scheduled restores due at or before ``before``, after the cursor."""
    # a closed range: MongoDB never matches null to `$lte: <date>`, but mongoeco does
    query: dict[str, Any] = {
        "state": str(RestoreState.SCHEDULED),
        "due_at": {"$gt": EPOCH, "$lte": before},
    }
    if after_due is not None:
        query["$or"] = [
            {"due_at": {"$gt": after_due}},
            {"due_at": after_due, "_id": {"$gt": after_id}},
        ]
    return query


def stranded_query(before: datetime) -> dict[str, Any]:
    """Restores queued a while ago whose plan was never recorded as sent."""
    return {
        "state": str(RestoreState.QUEUED),
        "plan_sent_at": None,
        "queued_at": {"$gt": EPOCH, "$lte": before - PLAN_RESEND_AFTER},
    }


class RestoreQueue:
    def __init__(
        self,
        restores: Restores,
        leadership: Leadership,
        audit: AuditLog,
        bus: Bus,
        clock: Clock,
    ) -> None:
        self._restores, self._leadership, self._audit = restores, leadership, audit
        self._bus, self._clock = bus, clock

    async def publish_plan(self, restore: Restore) -> Restore:
        """Send a queued restore's ``PlanRestore`` and record it sent; the restore
        ``failed`` if the broker refused it."""
        command = r.PlanRestore(restore_id=restore.id, host_id=restore.host_id)
        key = run_routing_key(BackupHostId(restore.host_id))
        try:
            await self._bus.publish("commands", key, command, message_id=f"plan:{restore.id}")
        except EdgebackError as exc:
            return await self._restores.transition(
                restore.id, RestoreState.FAILED, f"{exc.code}: {exc.message}"
            )
        sent = {"$set": {"plan_sent_at": self._clock()}}
        await self._restores.db.update(Coll.RESTORES, {"_id": restore.id}, sent)
        return restore

    async def start(self, actor: Actor, restore_id: str, code: str) -> Restore:
        """Verify the code; an immediate restore is then queued and planned."""
        restore = await self._restores.start(actor, restore_id, code)
        if restore.state is not RestoreState.QUEUED:
            return restore
        return await self.publish_plan(restore)

    async def run(self, actor: Actor, restore_id: str) -> Restore:
        """Queue and plan a verified manual restore now (``restore_not_runnable``)."""
        return await self.publish_plan(await self._restores.run(actor, restore_id))

    async def queue_due(self, actor: Actor, req: s.QueueDueRestores) -> DuePage:
        """One page of due once restores, each queued (or expired) on its own condition."""
        if not 1 <= req.limit <= s.MAX_DUE_PAGE:
            raise InvalidInputError(f"limit must be 1-{s.MAX_DUE_PAGE}", field="limit")
        if req.late_limit_s < 0:
            raise InvalidInputError("late_limit_s must not be negative", field="late_limit_s")
        docs = await self._restores.db.find(
            Coll.RESTORES,
            due_query(req.before, req.after_due, req.after_id),
            sort=(("due_at", 1), ("_id", 1)),
            limit=req.limit + 1,
        )
        stranded = [] if req.after_due is not None else await self._stranded(req.before)
        if not docs and not stranded:  # the usual tick: two indexed queries, no write
            return DuePage(restores=[], more=False)
        await self._leadership.require(s.SCHEDULER_ROLE, req.holder, req.token)
        resent = [(await self.publish_plan(x)).id for x in stranded]
        page = [restore_of(doc) for doc in docs[: req.limit]]
        held = await self._restores.held_jobs(page)
        done = [await self._queue_one(actor, x, req, held) for x in page]
        return DuePage(restores=done, more=len(docs) > req.limit, resent=resent)

    async def _stranded(self, before: datetime) -> list[Restore]:
        docs = await self._restores.db.find(
            Coll.RESTORES, stranded_query(before), sort=(("queued_at", 1),), limit=50
        )
        return [restore_of(doc) for doc in docs]

    async def _queue_one(
        self, actor: Actor, restore: Restore, req: s.QueueDueRestores, held: set[str]
    ) -> s.DueRestore:
        due = utc(restore.due_at or EPOCH)
        late = round(max((req.before - due).total_seconds(), 0.0), 3)
        reply = s.DueRestore(restore_id=restore.id, due=due, outcome="held", late_by_s=late)
        if restore.job_id in held:
            return reply
        too_late = 0 < req.late_limit_s < late
        target = RestoreState.EXPIRED if too_late else RestoreState.QUEUED
        reason = f"due; missed its time by {late:g} s (limit {req.late_limit_s:g} s)"
        moved = await self._restores.move_due(restore, target, reason, req.token)
        if moved is None:
            return msgspec.structs.replace(reply, outcome="taken")
        details = {"due": due.isoformat(), "late_by_s": late, "token": req.token}
        await self._audit.record(actor, f"restore.{target}", f"restore/{restore.id}", details)
        if too_late:
            await self._restores.ended(moved)
            return msgspec.structs.replace(reply, outcome="expired")
        planned = await self.publish_plan(moved)
        failed = planned.state is RestoreState.FAILED
        return msgspec.structs.replace(reply, outcome="failed" if failed else "queued")
