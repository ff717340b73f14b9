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
from datetime import datetime
from typing import Any

from edgeback_catalog import loginthrottle
from edgeback_catalog.documents import utc
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import ConflictError, LoginThrottledError

_TRIES = 8
"""Compare-and-set rounds before an attempt is refused as throttled: each round one of
the concurrent attempts wins, and a counter past ``FREE_FAILURES`` refuses the rest."""


class LoginCounters:
    def __init__(self, db: CatalogDb) -> None:
        self._db = db

    async def take(self, keys: tuple[str, ...], now: datetime) -> None:
        """Count one attempt on each of ``keys``, or raise ``login_throttled`` (then
        nothing is counted)."""
        taken: list[str] = []
        try:
            for key in keys:
                await self._take_one(key, now)
                taken.append(key)
        except LoginThrottledError:
            for key in taken:
                await self.give_back(key)
            raise

    async def give_back(self, key: str) -> None:
        """Undo one counted attempt (it succeeded, or another counter refused it)."""
        change = {"$inc": {"count": -1}}
        await self._db.update(Coll.LOGIN_FAILURES, {"_id": key, "count": {"$gt": 0}}, change)

    async def clear(self, key: str) -> None:
        await self._db.delete(Coll.LOGIN_FAILURES, {"_id": key})

    async def purge(self, now: datetime) -> int:
        """Delete the counters no longer in force."""
        old = {"last_at": {"$lte": now - loginthrottle.FORGET_AFTER}}
        return await self._db.delete_all(Coll.LOGIN_FAILURES, old)

    async def _take_one(self, key: str, now: datetime) -> None:
        for _ in range(_TRIES):
            doc = await self._db.find_one(Coll.LOGIN_FAILURES, {"_id": key})
            counter = _failures(doc)
            wait = loginthrottle.retry_after_s(counter, now)
            if wait > 0:
                raise LoginThrottledError("too many failed logins", retry_after_s=math.ceil(wait))
            count = loginthrottle.live_count(counter, now) + 1
            if doc is None:
                try:
                    await self._db.insert(
                        Coll.LOGIN_FAILURES, {"_id": key, "count": count, "last_at": now}
                    )
                except ConflictError:
                    continue  # another attempt created it first: read it again
                return
            seen = {"_id": key, "count": doc["count"], "last_at": doc["last_at"]}
            change = {"$set": {"count": count, "last_at": now}}
            if await self._db.update(Coll.LOGIN_FAILURES, seen, change) is not None:
                return
        raise LoginThrottledError("too many logins at once", retry_after_s=1)


def _failures(doc: dict[str, Any] | None) -> loginthrottle.Failures | None:
    if doc is None:
        return None
    return loginthrottle.Failures(count=int(doc["count"]), last_at=utc(doc["last_at"]))
