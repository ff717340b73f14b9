"""Leases for limits that span worker processes: the rules, without I/O.

A scope (``run:<run_id>``, ``hypervisor:<platform>/<host>``) has ``limit`` slots,
numbered 0..limit-1. Each slot is one document keyed ``<scope>#<slot>`` (unique), so
"at most ``limit`` holders" is enforced by the database's unique ``_id``, not by a
count someone could race past. A slot is free when no document exists or its lease
has expired; taking it is one conditional upsert whose filter repeats :func:`takeover_filter`
(expired, or already mine): if another holder's live lease is there, the upsert's
insert collides on ``_id`` and the slot is busy. Holders try slots in an order spread
by their name, so concurrent acquirers rarely fight over slot 0.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edgeback_core.errors import InvalidInputError

MAX_LIMIT = 1000
TTL_RANGE_S = (1.0, 3600.0)
_SCOPE = re.compile(r"[a-z]+:[\x21-\x7e]{1,200}")
_HOLDER = re.compile(r"[\x21-\x7e]{1,200}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    scope: str
    slot: int
    holder: str
    expires_at: datetime

    @property
    def key(self) -> str:
        return slot_key(self.scope, self.slot)

    def live(self, now: datetime) -> bool:
        return now < self.expires_at


def slot_key(scope: str, slot: int) -> str:
    return f"{scope}#{slot}"


def check_request(scope: str, holder: str, limit: int, ttl_s: float) -> None:
    """Refuse a malformed request, naming every problem."""
    problems = []
    if not _SCOPE.fullmatch(scope):
        problems.append("scope: '<kind>:<id>', printable, no spaces")
    if not _HOLDER.fullmatch(holder):
        problems.append("holder: 1-200 printable characters, no spaces")
    if not 1 <= limit <= MAX_LIMIT:
        problems.append(f"limit: 1-{MAX_LIMIT}")
    low, high = TTL_RANGE_S
    if not low <= ttl_s <= high:
        problems.append(f"ttl_s: {low:g}-{high:g} seconds")
    if problems:
        raise InvalidInputError("invalid lease request: " + "; ".join(problems))


def slot_order(holder: str, limit: int) -> list[int]:
    """Every slot once, starting at one picked by the holder's name."""
    start = int.from_bytes(hashlib.blake2b(holder.encode(), digest_size=4).digest()) % limit
    return [(start + i) % limit for i in range(limit)]


def takeover_filter(scope: str, slot: int, holder: str, now: datetime) -> dict[str, Any]:
    """The slot's document, if the holder may take it now: expired, or already its own."""
    return {
        "_id": slot_key(scope, slot),
        "$or": [{"expires_at": {"$lte": now}}, {"holder": holder}],
    }


def granted(scope: str, slot: int, holder: str, now: datetime, ttl_s: float) -> Lease:
    return Lease(scope=scope, slot=slot, holder=holder, expires_at=now + timedelta(seconds=ttl_s))


def may_take(current: Lease | None, holder: str, now: datetime) -> bool:
    """The rule the filter enforces: free, expired, or already held by ``holder``."""
    return current is None or not current.live(now) or current.holder == holder
