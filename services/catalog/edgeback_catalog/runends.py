"""Announcing the end of a run: one ``RunFinished`` per run, published by the catalog.

Every way a run ends passes through the catalog (the last VM finished, an explicit
``catalog.run.finish``, a transition by a worker such as a failed precondition, a
cancel, a plan that could not be sent), so the catalog announces it, right after the
terminal transition, with the message id ``finished:<run_id>``. The run document then
gets ``finished_announced_at``. A catalog that stopped between the transition and the
publish announces it on the next request that finds the run ended (a worker repeating
its finish) and at start-up (:meth:`RunEnds.announce_missed`); either may publish it
again under the same id, which consumers drop (the run log keeps one).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, cast

import structlog

from edgeback_catalog.backupsets import BackupSets
from edgeback_catalog.backupwire import total_stats
from edgeback_catalog.documents import run_of
from edgeback_catalog.domain import Clock, Run, RunId
from edgeback_catalog.mongo import CatalogDb, Coll, Doc
from edgeback_catalog.runstate import TERMINAL, RunState
from edgeback_catalog.vmtaskstate import VmTaskState
from edgeback_core.bus.topology import RUN_FINISHED
from edgeback_core.messages import runs as r

if TYPE_CHECKING:
    from edgeback_core.bus.port import Bus

log = structlog.get_logger(__name__)

ANNOUNCED = "finished_announced_at"
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def finished_message_id(run_id: str) -> str:
    return f"finished:{run_id}"


def finished_event(run: Run, vm_states: list[str], sets_stats: r.DiskStats) -> r.RunFinished:
    """The ``RunFinished`` of an ended run. ``code``: for a failed run, the reason of the
    final step when it is a bare error code (a worker failing a run before any VM, e.g.
    ``precondition_failed``, gives it as the reason)."""
    last, failed = run.history[-1], run.state is RunState.FAILED
    counts = Counter(vm_states)
    return r.RunFinished(
        run_id=run.id,
        job_id=run.job_id,
        outcome=cast(r.RunOutcome, str(run.state)),
        vms_succeeded=counts[VmTaskState.SUCCEEDED],
        vms_failed=counts[VmTaskState.FAILED]
        + counts[VmTaskState.PENDING]
        + counts[VmTaskState.RUNNING],
        vms_skipped=counts[VmTaskState.SKIPPED],
        vms_refused=counts[VmTaskState.REFUSED],
        stats=sets_stats,
        code=last.reason if failed and _CODE.fullmatch(last.reason) else "",
        at=last.at,
    )


class RunEnds:
    """Publishes ``RunFinished``; ``bus=None`` publishes nothing (tests of the
    catalog's own rules that run without a bus)."""

    def __init__(self, db: CatalogDb, sets: BackupSets, clock: Clock, bus: Bus | None) -> None:
        self._db, self._sets, self._clock, self._bus = db, sets, clock, bus

    async def announce(self, run_id: RunId) -> bool:
        """Publish the run's ``RunFinished`` if it ended and was not announced yet."""
        doc = await self._db.find_one(Coll.RUNS, {"_id": run_id})
        if self._bus is None or doc is None or doc.get(ANNOUNCED) is not None:
            return False
        return await self._announce(doc)

    async def announce_missed(self, limit: int = 500) -> int:
        """Announce ended runs whose ``RunFinished`` was never published (start-up)."""
        if self._bus is None:
            return 0
        query = {"state": {"$in": sorted(TERMINAL)}, ANNOUNCED: None}
        docs = await self._db.find(Coll.RUNS, query, limit=limit)
        done = [await self._announce(doc) for doc in docs]
        return sum(done)

    async def _announce(self, doc: Doc) -> bool:
        run = run_of(doc)
        if run.state not in TERMINAL or self._bus is None:
            return False
        tasks = await self._db.find(Coll.VM_TASKS, {"run_id": run.id})
        stats = total_stats(await self._sets.of_run(run.id))
        event = finished_event(run, [t["state"] for t in tasks], stats)
        await self._bus.publish(
            "events", RUN_FINISHED, event, message_id=finished_message_id(run.id)
        )
        await self._db.update(Coll.RUNS, {"_id": run.id}, {"$set": {ANNOUNCED: self._clock()}})
        log.info("run.finished", run_id=run.id, job_id=run.job_id, outcome=event.outcome)
        return True
