"""Due jobs for the scheduler: which jobs are due before a time, and marking them fired.

``due`` is one query on the ``(next_due, _id)`` index, whatever the number of jobs;
pages continue after the last ``(next_due, _id)`` seen. ``mark_fired`` first checks
the caller's fencing token against the scheduler's lease (``leadership.py``), reads the
page's jobs with one query, and writes every next due time with one bulk of
conditional updates, each on its own job: on ``next_due`` still being the fired slot
(fired once, whoever else tries), on the anchor read (an edit of the schedule in
between wins) and on ``fence_token`` not being newer than the caller's (a stale
scheduler cannot overwrite its successor's mark, even if its token check passed just
before the takeover). A page costs four database operations whatever its size (the
due query, the token check, the read, the bulk write); a fifth reads back which marks
held when some did not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import JobId
from edgeback_catalog.jobdocs import job_of
from edgeback_catalog.jobschedule import due_after_fire
from edgeback_catalog.leadership import Leadership
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages.scheduling import MAX_DUE_PAGE, SCHEDULER_ROLE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class DueJob:
    job_id: JobId
    due: datetime
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fired:
    job_id: JobId
    applied: bool
    next_due: datetime | None = None


def due_query(before: datetime, after_due: datetime | None, after_id: str) -> dict[str, Any]:
    """Enabled jobs due at or before ``before``, after the cursor ``(after_due, after_id)``."""
    # a closed range: MongoDB never matches null to `$lte: <date>`, but mongoeco does
    query: dict[str, Any] = {"next_due": {"$gt": EPOCH, "$lte": before}, "enabled": True}
    if after_due is not None:
        query["$or"] = [
            {"next_due": {"$gt": after_due}},
            {"next_due": after_due, "_id": {"$gt": after_id}},
        ]
    return query


def _ms(value: datetime) -> datetime:
    """At the precision BSON keeps, so what is written compares equal when read back."""
    return utc(value).replace(microsecond=value.microsecond // 1000 * 1000)


class DueJobs:
    def __init__(self, db: CatalogDb, leadership: Leadership) -> None:
        self._db, self._leadership = db, leadership

    async def due(
        self, before: datetime, *, after_due: datetime | None, after_id: str, limit: int
    ) -> tuple[list[DueJob], bool]:
        """One page by (due, id) and whether more may follow."""
        if not 1 <= limit <= MAX_DUE_PAGE:
            raise InvalidInputError(f"limit must be 1-{MAX_DUE_PAGE}", field="limit")
        docs = await self._db.find(
            Coll.JOBS,
            due_query(before, after_due, after_id),
            sort=(("next_due", 1), ("_id", 1)),
            limit=limit + 1,
        )
        page = [
            DueJob(job_id=JobId(d["_id"]), due=utc(d["next_due"]), revision=int(d["revision"]))
            for d in docs[:limit]
        ]
        return page, len(docs) > limit

    async def mark_fired(
        self, holder: str, token: int, fired_at: datetime, fires: Sequence[tuple[JobId, datetime]]
    ) -> list[Fired]:
        """Move each job's next due time past ``fired_at``; ``lease_lost`` if ``token`` is
        not the scheduler's current one."""
        if len(fires) > MAX_DUE_PAGE:
            raise InvalidInputError(f"at most {MAX_DUE_PAGE} fires at once", field="fires")
        await self._leadership.require(SCHEDULER_ROLE, holder, token)
        at, slots = _ms(fired_at), [(job_id, _ms(due)) for job_id, due in fires]
        ids = sorted({job_id for job_id, _ in slots})
        docs = {d["_id"]: d for d in await self._db.find(Coll.JOBS, {"_id": {"$in": ids}})}
        marks = {
            (job_id, due): mark
            for job_id, due in slots
            if (mark := _mark(docs.get(job_id), due, token, at)) is not None
        }
        matched = await self._db.update_each(Coll.JOBS, [m.update for m in marks.values()])
        held = set(marks) if matched == len(marks) else await self._held(marks, token, at)
        return [
            Fired(job_id=job_id, applied=True, next_due=marks[job_id, due].next_due)
            if (job_id, due) in held
            else Fired(job_id=job_id, applied=False)
            for job_id, due in slots
        ]

    async def _held(
        self, marks: dict[tuple[JobId, datetime], Mark], token: int, fired_at: datetime
    ) -> set[tuple[JobId, datetime]]:
        """Which marks were written: their job now says this slot fired at ``fired_at``
        with ``token`` (exact unless a newer write came in since, which makes a mark read
        as refused: the reply's counts, nothing else, depend on it)."""
        ids = sorted({job_id for job_id, _ in marks})
        query = {"_id": {"$in": ids}, "last_fired": fired_at, "fence_token": token}
        docs = await self._db.find(Coll.JOBS, query)
        return {(JobId(d["_id"]), utc(d["last_due"])) for d in docs} & set(marks)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """One job's conditional update after firing one slot, and the next due time it sets."""

    update: tuple[dict[str, Any], dict[str, Any]]
    next_due: datetime | None


def _mark(doc: dict[str, Any] | None, due: datetime, token: int, fired_at: datetime) -> Mark | None:
    """The mark of slot ``due`` of the job ``doc``; None when that slot is not its next due
    time any more (fired already, edited, disabled, deleted)."""
    if doc is None or doc.get("next_due") is None or utc(doc["next_due"]) != due:
        return None
    job = job_of(doc)
    nxt = due_after_fire(job.spec.schedule, job.schedule_anchor or job.created_at, due, fired_at)
    condition = {
        "_id": doc["_id"],
        "next_due": due,
        "schedule_anchor": doc.get("schedule_anchor"),
        "fence_token": {"$lte": token},
    }
    change = {
        "$set": {"next_due": nxt, "last_due": due, "last_fired": fired_at, "fence_token": token}
    }
    return Mark(update=(condition, change), next_due=nxt)
