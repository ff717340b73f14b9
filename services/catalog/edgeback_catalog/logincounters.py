"""The stored counters of failed logins (``login_failures``), per user name and per client
address, as ``loginthrottle`` rules them.

An attempt is counted *before* its password is checked, by a compare-and-set on the
counter it read (count and time), so attempts arriving together take distinct counts:
the catalog answers RPCs concurrently and Argon2 takes tens of milliseconds, and a
read-check-then-increment let every parallel guess see the same old count (all of
them passed). An attempt the throttle refuses changes nothing; a successful login
clears the user's counter and gives back its own count on the address's. Counters
forgotten (no failure for ``FORGET_AFTER``) are purged with the expired tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgeback_catalog import loginthrottle
from edgeback_catalog.documents import utc
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import ConflictError, LoginThrottledError

_TRIES = 8
"""Compare-and-set rounds before an attempt is refused as throttled: each round one of
the concurrent attempts wins, and a counter past ``FREE_FAILURES`` refuses the rest."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Taken:
    """One attempt counted on ``key``: the counter as it was (None: there was none) and
    as the attempt left it, so that giving it back restores it exactly."""

    key: str
    before: dict[str, Any] | None
    after: dict[str, Any]


class LoginCounters:
    def __init__(self, db: CatalogDb) -> None:
        self._db = db

    async def take(self, keys: tuple[str, ...], now: datetime) -> list[Taken]:
        """Count one attempt on each of ``keys``, or raise ``login_throttled`` (then
        nothing is counted)."""
        taken: list[Taken] = []
        try:
            for key in keys:
                taken.append(await self._take_one(key, now))
        except LoginThrottledError:
            for one in taken:
                await self.give_back(one)
            raise
        return taken

    async def give_back(self, taken: Taken) -> None:
        """Undo one counted attempt (it succeeded, or another counter refused it): the
        counter as it was, unless another attempt changed it since (then one less)."""
        now_is = {"_id": taken.key, **taken.after}
        if taken.before is None:
            restored = await self._db.delete(Coll.LOGIN_FAILURES, now_is)
        else:
            change = {"$set": taken.before}
            restored = await self._db.update(Coll.LOGIN_FAILURES, now_is, change) is not None
        if not restored:
            change = {"$inc": {"count": -1}}
            query = {"_id": taken.key, "count": {"$gt": 0}}
            await self._db.update(Coll.LOGIN_FAILURES, query, change)

    async def clear(self, key: str) -> None:
        await self._db.delete(Coll.LOGIN_FAILURES, {"_id": key})

    async def purge(self, now: datetime) -> int:
        """Delete the counters no longer in force."""
        old = {"last_at": {"$lte": now - loginthrottle.FORGET_AFTER}}
        return await self._db.delete_all(Coll.LOGIN_FAILURES, old)

    async def _take_one(self, key: str, now: datetime) -> Taken:
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as BSON stores it
        for _ in range(_TRIES):
            doc = await self._db.find_one(Coll.LOGIN_FAILURES, {"_id": key})
            counter = _failures(doc)
            wait = loginthrottle.retry_after_s(counter, now)
            if wait > 0:
                raise LoginThrottledError("too many failed logins", retry_after_s=math.ceil(wait))
            after = {"count": loginthrottle.live_count(counter, now) + 1, "last_at": now}
            if doc is None:
                try:
                    await self._db.insert(Coll.LOGIN_FAILURES, {"_id": key, **after})
                except ConflictError:
                    continue  # another attempt created it first: read it again
                return Taken(key=key, before=None, after=after)
            before = {"count": doc["count"], "last_at": doc["last_at"]}
            if (
                await self._db.update(Coll.LOGIN_FAILURES, {"_id": key, **before}, {"$set": after})
                is not None
            ):
                return Taken(key=key, before=before, after=after)
        raise LoginThrottledError("too many logins at once", retry_after_s=1)


def _failures(doc: dict[str, Any] | None) -> loginthrottle.Failures | None:
    if doc is None:
        return None
    return loginthrottle.Failures(count=int(doc["count"]), last_at=utc(doc["last_at"]))
