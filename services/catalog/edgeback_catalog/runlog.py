"""The event log of runs and restores: every run event on the bus, kept per run and per
job, and every restore event, kept per restore.

Workers (and the catalog itself) publish ``RunStarted``, ``VmFinished``, ...; the
catalog consumes them from its own queue and keeps each once, keyed by its message id
(a redelivery or a republish under the same id changes nothing). The body is kept as
the JSON it came in, so a read gives back exactly the event that was published. Entries
sort by ``key`` = event time then message id (a string that sorts like the pair), which
is also the page cursor: oldest first, stable while new events arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import Clock, JobId, RunId
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import InvalidInputError
from edgeback_core.eventkeys import entry_key
from edgeback_core.messages import restores as rs
from edgeback_core.messages import runs as r
from edgeback_core.messages.base import decoder, encode

__all__ = ["LogEntry", "RunLog", "entry_key", "run_of_event"]

MAX_PAGE = 500


E = TypeVar("E")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry(Generic[E]):
    message_id: str
    received_at: datetime
    event: E
    key: str


def run_of_event(event: r.RunEvent) -> str | None:
    """The run an event belongs to; None for a ``RunSkipped`` (no run was made)."""
    return None if isinstance(event, r.RunSkipped) else event.run_id


class RunLog:
    def __init__(self, db: CatalogDb, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def record(self, event: r.RunEvent | rs.RestoreEvent, message_id: str) -> bool:
        """Keep ``event`` once per message id; False when it was kept already."""
        if not message_id:
            raise InvalidInputError("a run event needs a message id to be kept once")
        if isinstance(event, rs.RestoreEvent):
            owner = {"run_id": None, "job_id": None, "restore_id": event.restore_id}
        else:
            owner = {"run_id": run_of_event(event), "job_id": event.job_id, "restore_id": None}
        fields = {
            **owner,
            "type": type(event).__name__,
            "at": event.at,
            "key": entry_key(event.at, message_id),
            "received_at": self._clock(),
            "body": encode(event).decode(),
        }
        before = await self._db.find_one(Coll.RUN_LOG, {"_id": message_id})
        if before is not None:
            return False
        # an upsert, so two deliveries racing past the read still keep one entry
        await self._db.upsert(Coll.RUN_LOG, {"_id": message_id}, {"$setOnInsert": fields})
        return True

    async def page(
        self,
        *,
        run_id: RunId | None = None,
        job_id: JobId | None = None,
        after: str | None = None,
        limit: int = 100,
        match: Mapping[str, Any] | None = None,
    ) -> tuple[list[LogEntry[r.RunEvent]], str | None]:
        """One page, oldest first, and the cursor of the next one (None: last page);
        ``match``: more clauses (``listfilters.event_filters``)."""
        if (run_id is None) == (job_id is None):
            raise InvalidInputError("read the event log of one run or of one job")
        query: dict[str, Any] = {"run_id": run_id} if run_id else {"job_id": job_id}
        query |= match or {}
        return await self._page(query, r.RunEvent, after, limit)  # type: ignore[arg-type]

    async def restore_page(
        self,
        restore_id: str,
        *,
        after: str | None = None,
        limit: int = 100,
        match: Mapping[str, Any] | None = None,
    ) -> tuple[list[LogEntry[rs.RestoreEvent]], str | None]:
        """One page of a restore's events, oldest first, and the next page's cursor."""
        kind = cast("type[rs.RestoreEvent]", rs.RestoreEvent)
        return await self._page({**(match or {}), "restore_id": restore_id}, kind, after, limit)

    async def _page(
        self, query: dict[str, Any], kind: type[E], after: str | None, limit: int
    ) -> tuple[list[LogEntry[E]], str | None]:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be 1-{MAX_PAGE}", field="limit")
        if after is not None:  # beside a ``since`` bound on the same key
            query["key"] = {**query.get("key", {}), "$gt": after}
        docs = await self._db.find(Coll.RUN_LOG, query, sort=(("key", 1),), limit=limit + 1)
        read = decoder(kind)
        entries = [
            LogEntry(
                message_id=doc["_id"],
                received_at=utc(doc["received_at"]),
                event=read.decode(doc["body"]),
                key=doc["key"],
            )
            for doc in docs[:limit]
        ]
        return entries, (entries[-1].key if len(docs) > limit else None)
