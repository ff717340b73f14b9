"""Announcing the end of a restore: one ``RestoreFinished``, published by the catalog.

As for runs (``runends``): every way a restore ends passes through the catalog (its
last VM finished, a cancel, a failed precondition, a plan that could not be sent), so
the catalog publishes ``RestoreFinished`` (message id ``restore-finished:<id>``) right
after the terminal transition and marks the restore ``finished_announced_at``. A
catalog that stopped in between announces it when a worker repeats its finish, or at
start-up (:meth:`RestoreEnds.announce_missed`), under the same id. A restore whose
code expired unused never ran and is not announced.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, cast

import structlog

from edgeback_catalog.domain import Clock
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.restoredocs import Restore, restore_of
from edgeback_catalog.restorestate import RestoreState
from edgeback_catalog.runends import ANNOUNCED
from edgeback_catalog.vmtaskstate import VmTaskState
from edgeback_core.bus.topology import RESTORE_FINISHED
from edgeback_core.messages import restores as r

if TYPE_CHECKING:
    from edgeback_core.bus.port import Bus

log = structlog.get_logger(__name__)

ANNOUNCED_STATES = frozenset(
    {
        RestoreState.SUCCEEDED,
        RestoreState.FAILED,
        RestoreState.PARTIALLY_SUCCEEDED,
        RestoreState.CANCELLED,
    }
)
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def finished_message_id(restore_id: str) -> str:
    return f"restore-finished:{restore_id}"


def finished_event(restore: Restore, vm_states: list[str], at_reason: str) -> r.RestoreFinished:
    """``code``: for a failed restore, the reason of its last step when it is a bare code
    (a worker failing it before any VM gives ``precondition_failed`` as the reason)."""
    counts = Counter(vm_states)
    failed = restore.state is RestoreState.FAILED
    return r.RestoreFinished(
        restore_id=restore.id,
        outcome=cast(r.RestoreOutcome, str(restore.state)),
        vms_succeeded=counts[VmTaskState.SUCCEEDED],
        vms_failed=counts[VmTaskState.FAILED]
        + counts[VmTaskState.PENDING]
        + counts[VmTaskState.RUNNING],
        vms_refused=counts[VmTaskState.REFUSED],
        code=at_reason if failed and _CODE.fullmatch(at_reason) else "",
        at=restore.updated_at,
    )


class RestoreEnds:
    """Publishes ``RestoreFinished``; ``bus=None`` publishes nothing."""

    def __init__(self, db: CatalogDb, clock: Clock, bus: Bus | None) -> None:
        self._db, self._clock, self._bus = db, clock, bus

    async def announce(self, restore: Restore) -> bool:
        """Publish the restore's ``RestoreFinished`` if it ended and was not announced."""
        doc = await self._db.find_one(Coll.RESTORES, {"_id": restore.id})
        if self._bus is None or doc is None or doc.get(ANNOUNCED) is not None:
            return False
        return await self._announce(restore_of(doc))

    async def announce_missed(self, limit: int = 500) -> int:
        """Announce ended restores whose ``RestoreFinished`` was never published."""
        if self._bus is None:
            return 0
        query = {"state": {"$in": sorted(ANNOUNCED_STATES)}, ANNOUNCED: None}
        docs = await self._db.find(Coll.RESTORES, query, limit=limit)
        return sum([await self._announce(restore_of(doc)) for doc in docs])

    async def _announce(self, restore: Restore) -> bool:
        if restore.state not in ANNOUNCED_STATES or self._bus is None:
            return False
        tasks = await self._db.find(Coll.RESTORE_VM_TASKS, {"restore_id": restore.id})
        event = finished_event(restore, [t["state"] for t in tasks], restore.reason)
        await self._bus.publish(
            "events", RESTORE_FINISHED, event, message_id=finished_message_id(restore.id)
        )
        await self._db.update(
            Coll.RESTORES, {"_id": restore.id}, {"$set": {ANNOUNCED: self._clock()}}
        )
        log.info("restore.finished", restore_id=restore.id, outcome=event.outcome)
        return True
