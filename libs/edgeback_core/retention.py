"""Retention: which restore points of a job to keep, as a pure function of the points.

:func:`select` applies a :class:`~edgeback_core.messages.jobs.RetentionPolicy` to a
job's restore points (one VM's backup sets). A point is kept when any rule selects it:

- ``keep_last`` N: the N newest points;
- ``keep_daily`` / ``keep_weekly`` / ``keep_monthly`` N: the newest point of each of
  the N newest local days / ISO weeks / months that have points, in the backup host's
  time zone (a point at 00:30 Shanghai time belongs to that day, not to the UTC one
  before it);

and whatever the rules say, these are never removed: protected points; the newest
point (the base of the next incremental); the newest full (the base of the next
cumulative). Every disk version's manifest is a full chunk map, so kept points never
need their parents for a restore: only the pending backups need their bases. With
no rule set (the default policy) everything is kept. Each kept point says why.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from edgeback_core.messages.jobs import RetentionPolicy

Kind = Literal["full", "incremental", "cumulative"]
Reason = Literal[
    "last", "daily", "weekly", "monthly", "protected", "newest", "newest_full", "no_policy"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestorePoint:
    id: str
    taken: datetime
    """When the backup's snapshot was taken (aware)."""
    kind: Kind
    protected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    keep: dict[str, tuple[Reason, ...]]
    """Kept ids and every reason that keeps each."""
    remove: tuple[str, ...]
    """Ids to expire, oldest first."""


def select(points: Sequence[RestorePoint], policy: RetentionPolicy, zone: ZoneInfo) -> Selection:
    """Apply ``policy`` to ``points`` (any order; ids unique)."""
    newest_first = sorted(points, key=lambda p: (p.taken, p.id), reverse=True)
    reasons: dict[str, list[Reason]] = {p.id: [] for p in newest_first}
    rules = (policy.keep_last, policy.keep_daily, policy.keep_weekly, policy.keep_monthly)
    if all(rule is None for rule in rules):
        for point in newest_first:
            reasons[point.id].append("no_policy")
    _by_period(newest_first, policy.keep_last, lambda p: p.id, "last", reasons)
    _by_period(newest_first, policy.keep_daily, lambda p: _local(p, zone).date(), "daily", reasons)
    _by_period(
        newest_first,
        policy.keep_weekly,
        lambda p: _local(p, zone).isocalendar()[:2],
        "weekly",
        reasons,
    )
    _by_period(
        newest_first,
        policy.keep_monthly,
        lambda p: (_local(p, zone).year, _local(p, zone).month),
        "monthly",
        reasons,
    )
    _always(newest_first, reasons)
    keep = {pid: tuple(why) for pid, why in reasons.items() if why}
    remove = tuple(p.id for p in reversed(newest_first) if p.id not in keep)
    return Selection(keep=keep, remove=remove)


def _by_period(
    newest_first: Sequence[RestorePoint],
    count: int | None,
    period: Callable[[RestorePoint], Hashable],
    reason: Reason,
    reasons: dict[str, list[Reason]],
) -> None:
    """Keep the newest point of each of the ``count`` newest periods."""
    if count is None:
        return
    seen: set[Hashable] = set()
    for point in newest_first:
        if len(seen) >= count:
            return
        key = period(point)
        if key not in seen:
            seen.add(key)
            reasons[point.id].append(reason)


def _always(newest_first: Sequence[RestorePoint], reasons: dict[str, list[Reason]]) -> None:
    if newest_first:
        reasons[newest_first[0].id].append("newest")
    full = next((p for p in newest_first if p.kind == "full"), None)
    if full is not None:
        reasons[full.id].append("newest_full")
    for point in newest_first:
        if point.protected:
            reasons[point.id].append("protected")


def _local(point: RestorePoint, zone: ZoneInfo) -> datetime:
    return point.taken.astimezone(zone)
