"""Wire structs of the catalog RPCs the scheduler service uses: its fenced leadership
lease, the jobs due before a time, and marking the slots it fired.

Leadership (``catalog.leader.*``): one document per role; whoever holds a live lease on
it is the active instance. Every takeover raises the lease's ``token`` (the fencing
token); a write that carries a token other than the current one is refused with
``lease_lost``, so a scheduler that lost its lease (paused, partitioned) cannot change
anything after its successor took over. The catalog's clock decides expiry.

Due jobs (``catalog.schedule.*``): one indexed query by next due time, paginated by
``(due, job_id)``. ``mark_fired`` moves a job's next due time on, conditional on it
still being the ``due`` the scheduler fired, and on the fencing token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from edgeback_core.messages.base import Message
from edgeback_core.messages.catalog import ActorRef, Request

LEADER_ACQUIRE: Final = "catalog.leader.acquire"
LEADER_RELEASE: Final = "catalog.leader.release"
SCHEDULE_DUE: Final = "catalog.schedule.due"
SCHEDULE_MARK_FIRED: Final = "catalog.schedule.mark_fired"
SCHEDULE_QUEUE_RESTORES: Final = "catalog.schedule.queue_restores"

SCHEDULER_ROLE: Final = "scheduler"
"""The leadership role of the scheduler service: one active instance fleet-wide."""

MAX_DUE_PAGE: Final = 500


class LeaderAcquire(Request, frozen=True, kw_only=True):
    """Take (or renew, when ``holder`` has it) the lease on ``role`` for ``ttl_s``."""

    actor: ActorRef
    role: str
    holder: str
    ttl_s: float


class LeaderRelease(Request, frozen=True, kw_only=True):
    """Give the lease up (it expires now, the token stays) if ``holder`` has ``token``."""

    actor: ActorRef
    role: str
    holder: str
    token: int


class LeaderInfo(Message, frozen=True, kw_only=True):
    role: str
    holder: str
    """The live holder (the caller when ``granted``)."""
    token: int
    """The fencing token of the current holder's tenure; grows with every takeover."""
    expires_at: datetime
    granted: bool
    """True: the caller holds the lease until ``expires_at``."""


class DueJobs(Request, frozen=True, kw_only=True):
    """Enabled jobs whose next due time is at or before ``before``, by (due, job id);
    pass the last one's ``due`` and ``job_id`` as ``after_due`` / ``after_id`` for the
    next page."""

    actor: ActorRef
    before: datetime
    after_due: datetime | None = None
    after_id: str = ""
    limit: int = 200


class DueJob(Message, frozen=True, kw_only=True):
    job_id: str
    due: datetime
    revision: int


class DueJobsReply(Message, frozen=True, kw_only=True):
    jobs: list[DueJob]
    more: bool
    """True: there may be more due jobs after the last one of this page."""


class Fire(Message, frozen=True, kw_only=True):
    job_id: str
    due: datetime


class MarkFired(Request, frozen=True, kw_only=True):
    """The scheduler published ``StartRun`` for each of ``fires`` at ``fired_at`` (its
    clock); move each job's next due time past ``fired_at``. Refused as a whole
    (``lease_lost``) unless ``holder`` holds the scheduler lease with ``token``."""

    actor: ActorRef
    holder: str
    token: int
    fired_at: datetime
    fires: list[Fire]


class FireResult(Message, frozen=True, kw_only=True):
    job_id: str
    applied: bool
    """False: the job's next due time was no longer ``due`` (fired already, edited,
    disabled or deleted), or a newer token wrote it; nothing changed."""
    next_due: datetime | None = None


class MarkFiredReply(Message, frozen=True, kw_only=True):
    results: list[FireResult]


# --- restores of schedule ``once`` ---------------------------------------------------
DueRestoreOutcome = Literal["queued", "expired", "failed", "held", "taken"]


class QueueDueRestores(Request, frozen=True, kw_only=True):
    """Queue the verified restores of schedule ``once`` due at or before ``before`` (by
    due time, id; after the cursor ``after_due`` / ``after_id``): each by a conditional
    update ``scheduled → queued``, then its ``PlanRestore`` is published. Refused as a
    whole (``lease_lost``) unless ``holder`` holds the scheduler lease with ``token``.
    ``late_limit_s`` > 0: one due longer ago than that is ended ``expired`` instead."""

    actor: ActorRef
    holder: str
    token: int
    before: datetime
    late_limit_s: float = 0.0
    after_due: datetime | None = None
    after_id: str = ""
    limit: int = 200


class DueRestore(Message, frozen=True, kw_only=True):
    restore_id: str
    due: datetime
    outcome: DueRestoreOutcome
    """``queued`` (its plan published), ``expired`` (past the late limit), ``failed``
    (the broker refused its plan), ``held`` (its restore job is disabled: it stays
    scheduled), ``taken`` (no longer scheduled when written: another instance or a
    cancel won)."""
    late_by_s: float = 0.0


class QueueDueRestoresReply(Message, frozen=True, kw_only=True):
    restores: list[DueRestore]
    more: bool
    """True: pass the last one's ``due`` and ``restore_id`` as the next cursor."""
    resent: list[str] = []
    """First page only: restores queued over a minute ago whose plan was never recorded
    as sent (their catalog stopped in between): their ``PlanRestore`` was sent again."""
