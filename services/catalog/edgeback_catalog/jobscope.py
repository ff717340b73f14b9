"""What belongs to the jobs an actor sees: the clause that keeps the runs and backup
sets of those jobs in the lists across jobs.

It asks ``Jobs.list`` which jobs the actor sees, a page at a time, so these lists
follow the very rule the job reads follow (the one-job lists check their job with
``Jobs.get``), whatever that rule becomes; it is never restated here. Admins and
services see every job, so their clause is empty (runs and sets of deleted or
imported jobs included).
"""

from __future__ import annotations

from typing import Any

from edgeback_catalog.access import NO_ID
from edgeback_catalog.domain import Actor
from edgeback_catalog.jobs import MAX_PAGE, Jobs


async def jobs_visible_to(jobs: Jobs, actor: Actor) -> dict[str, Any]:
    if actor.sees_everything:
        return {}
    seen: list[str] = []
    after: str | None = None
    while True:
        page, after = await jobs.list(actor, after=after, limit=MAX_PAGE)
        seen += [job.id for job in page]
        if after is None:
            return {"job_id": {"$in": sorted(seen) or [NO_ID]}}  # never an empty $in
