"""Fenced leadership leases: one active instance of a role (the scheduler), with a
fencing token that grows on every takeover.

One document per role (``_id`` = the role), never deleted: releasing only expires it,
so its ``token`` survives and a later takeover counts on from it (the slot leases of
``leasing.py`` delete their documents and have no token). Acquiring is at most three
conditional writes, each safe against a concurrent one:

1. renew: the holder's own live lease gets a new expiry, same token;
2. take over: an expired lease gets the new holder and ``token + 1``;
3. first use: insert with token 1 (a concurrent insert collides on ``_id``).

Whoever writes with a token checks it against :meth:`Leadership.require`; the resources
it writes also remember the highest token that wrote them (``fence_token`` on a job),
so a holder that lost the lease can change nothing its successor has touched, even
between the check and the write. Times come from the catalog's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import Clock
from edgeback_catalog.leases import TTL_RANGE_S
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import AlreadyExistsError, InvalidInputError, LeaseLostError


@dataclass(frozen=True, slots=True, kw_only=True)
class Leader:
    role: str
    holder: str
    token: int
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        return now < self.expires_at


def leader_of(doc: dict[str, Any]) -> Leader:
    return Leader(
        role=doc["_id"],
        holder=doc["holder"],
        token=int(doc["token"]),
        expires_at=utc(doc["expires_at"]),
    )


def _check(role: str, holder: str, ttl_s: float) -> None:
    problems = []
    if not role or not holder or len(role) > 100 or len(holder) > 200:
        problems.append("role: 1-100 characters, holder: 1-200 characters")
    low, high = TTL_RANGE_S
    if not low <= ttl_s <= high:
        problems.append(f"ttl_s: {low:g}-{high:g} seconds")
    if problems:
        raise InvalidInputError("invalid leadership request: " + "; ".join(problems))


class Leadership:
    def __init__(self, db: CatalogDb, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def acquire(self, role: str, holder: str, ttl_s: float) -> tuple[Leader, bool]:
        """The lease as it is now, and whether ``holder`` has it (renewed or taken)."""
        _check(role, holder, ttl_s)
        now = self._clock()
        until = now + timedelta(seconds=ttl_s)
        renew = {"_id": role, "holder": holder, "expires_at": {"$gt": now}}
        doc = await self._db.update(Coll.LEADERS, renew, {"$set": {"expires_at": until}})
        if doc is None:
            taken = {"$set": {"holder": holder, "expires_at": until, "acquired_at": now}}
            expired = {"_id": role, "expires_at": {"$lte": now}}
            doc = await self._db.update(Coll.LEADERS, expired, {**taken, "$inc": {"token": 1}})
        if doc is None:
            doc = await self._insert_first(role, holder, now, until)
        leader = leader_of(doc)
        return leader, leader.holder == holder and leader.live(now)

    async def _insert_first(
        self, role: str, holder: str, now: datetime, until: datetime
    ) -> dict[str, Any]:
        first = {"_id": role, "holder": holder, "token": 1, "expires_at": until, "acquired_at": now}
        try:
            await self._db.insert(Coll.LEADERS, first)
        except AlreadyExistsError:  # another holder's live lease (or a concurrent insert)
            current = await self._db.find_one(Coll.LEADERS, {"_id": role})
            return current or first
        return first

    async def release(self, role: str, holder: str, token: int) -> bool:
        """Expire the lease now if ``holder`` has it with ``token``; the token stays."""
        now = self._clock()
        mine = {"_id": role, "holder": holder, "token": token, "expires_at": {"$gt": now}}
        return await self._db.update(Coll.LEADERS, mine, {"$set": {"expires_at": now}}) is not None

    async def require(self, role: str, holder: str, token: int) -> None:
        """``lease_lost`` unless ``holder`` still holds ``role`` with ``token``."""
        doc = await self._db.find_one(Coll.LEADERS, {"_id": role})
        current = None if doc is None else leader_of(doc)
        if current is None or (current.holder, current.token) != (holder, token):
            raise LeaseLostError(
                f"{holder} does not hold {role} with token {token}",
                role=role,
                token=token,
                current_token=None if current is None else current.token,
            )
