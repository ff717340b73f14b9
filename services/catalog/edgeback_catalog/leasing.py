"""Leases applied to MongoDB: acquire a slot in a scope, renew it, release it.

Rules and document keys are ``leases.py``. Acquire first renews a live lease the
holder already has in the scope (a redelivered request gets the same slot back), then
tries the slots in the holder's order with one conditional upsert each; a collision on
``_id`` means another live holder has that slot. Renew and release are conditional
on the holder, so a holder whose lease was taken over can neither extend nor free the
new holder's slot. Times come from the catalog's clock, never the caller's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edgeback_catalog.documents import utc
from edgeback_catalog.domain import Clock
from edgeback_catalog.leases import (
    Lease,
    check_request,
    granted,
    slot_key,
    slot_order,
    takeover_filter,
)
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.errors import AlreadyExistsError, LeaseLostError


def lease_of(doc: dict[str, Any]) -> Lease:
    return Lease(
        scope=doc["scope"],
        slot=int(doc["slot"]),
        holder=doc["holder"],
        expires_at=utc(doc["expires_at"]),
    )


class Leases:
    def __init__(self, db: CatalogDb, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def acquire(self, scope: str, holder: str, limit: int, ttl_s: float) -> Lease | None:
        """A slot of ``scope`` for ``holder`` until ``ttl_s`` from now, or None when all
        ``limit`` slots are held by others."""
        check_request(scope, holder, limit, ttl_s)
        now = self._clock()
        mine = await self._db.find_one(
            Coll.LEASES, {"scope": scope, "holder": holder, "expires_at": {"$gt": now}}
        )
        if mine is not None and int(mine["slot"]) < limit:
            return await self._take(scope, int(mine["slot"]), holder, now, ttl_s)
        for slot in slot_order(holder, limit):
            lease = await self._take(scope, slot, holder, now, ttl_s)
            if lease is not None:
                return lease
        return None

    async def _take(
        self, scope: str, slot: int, holder: str, now: datetime, ttl_s: float
    ) -> Lease | None:
        lease = granted(scope, slot, holder, now, ttl_s)
        change = {
            "$set": {"holder": holder, "expires_at": lease.expires_at, "acquired_at": now},
            "$setOnInsert": {"scope": scope, "slot": slot},
        }
        try:
            await self._db.upsert(Coll.LEASES, takeover_filter(scope, slot, holder, now), change)
        except AlreadyExistsError:  # the slot exists and is another holder's live lease
            return None
        return lease

    async def renew(self, scope: str, slot: int, holder: str, ttl_s: float) -> Lease:
        """Extend the holder's lease; ``lease_lost`` if someone else has the slot now."""
        check_request(scope, holder, slot + 1, ttl_s)
        now = self._clock()
        lease = granted(scope, slot, holder, now, ttl_s)
        doc = await self._db.update(
            Coll.LEASES,
            {"_id": slot_key(scope, slot), "holder": holder},
            {"$set": {"expires_at": lease.expires_at}},
        )
        if doc is None:
            raise LeaseLostError(f"{holder} no longer holds {slot_key(scope, slot)}")
        return lease

    async def release(self, scope: str, slot: int, holder: str) -> bool:
        """Free the slot if ``holder`` has it; True if it did (idempotent)."""
        return await self._db.delete(Coll.LEASES, {"_id": slot_key(scope, slot), "holder": holder})

    async def holders(self, scope: str) -> list[Lease]:
        """The live leases of ``scope`` by slot."""
        now = self._clock()
        docs = await self._db.find(
            Coll.LEASES, {"scope": scope, "expires_at": {"$gt": now}}, sort=(("slot", 1),)
        )
        return [lease_of(doc) for doc in docs]
