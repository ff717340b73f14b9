"""A job's schedule state in the catalog: the rules, without I/O.

The catalog keeps three times beside a job's schedule so the scheduler finds what is
due with one indexed query (``next_due``) instead of evaluating every job:

- ``schedule_anchor``: when the schedule was set (job created, or an edit that changed
  the schedule; other edits keep it), ``next_run``'s anchor;
- ``next_due``: the next fire, None when it never fires again (manual, a spent
  ``once``/``immediate``) or while the job is disabled;
- ``last_due`` / ``last_fired``: the slot the scheduler fired last, and when.

After a fire the next due time is the first slot after the later of the fired slot and
the moment it fired: slots missed while no scheduler ran collapse into that one late
fire instead of firing one by one. Re-enabling a job does not fire what was due while
it was disabled: the next slot after now.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from edgeback_core.messages.schedule import Schedule
from edgeback_core.schedules import next_run

_TICK = timedelta(microseconds=1)


def due_from(schedule: Schedule, anchor: datetime, now: datetime) -> datetime | None:
    """The first fire at or after ``now`` of a schedule set at ``anchor``: at the set-up
    (``now == anchor``; ``immediate`` fires at the anchor itself) or on re-enabling."""
    return next_run(schedule, now - _TICK, anchor=anchor)


def due_after_fire(
    schedule: Schedule, anchor: datetime, due: datetime, fired_at: datetime
) -> datetime | None:
    """The next fire once slot ``due`` fired at ``fired_at``: one late fire for any number
    of missed slots."""
    return next_run(schedule, max(due, fired_at), anchor=anchor)


def schedule_fields(schedule: Schedule, *, anchor: datetime, enabled: bool) -> dict[str, Any]:
    """The document fields of a schedule set at ``anchor`` (now)."""
    due = due_from(schedule, anchor, anchor) if enabled else None
    return {"schedule_anchor": anchor, "next_due": due}
