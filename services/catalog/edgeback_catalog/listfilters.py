"""The query clauses of the catalog's filtered lists, built from a request's filters. Pure.

Every filter becomes a clause of the one MongoDB query of its list (never a loop over
documents), so a filtered page costs what its index makes it cost. A time range is
``since`` inclusive, ``until`` exclusive; an empty range (``since`` at or after
``until``) is refused rather than answered with nothing, a typo being likelier than
the wish. Text filters are escaped: the caller's text never acts as a pattern.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from edgeback_core.errors import InvalidInputError
from edgeback_core.eventkeys import entry_key
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import restores as r

Query = dict[str, Any]


def between(
    field: str, since: datetime | None, until: datetime | None, *, names: tuple[str, str]
) -> Query:
    """``field`` in [``since``, ``until``); ``names`` are the request's fields, for errors."""
    if since is not None and until is not None and since >= until:
        raise InvalidInputError(f"{names[0]} must be before {names[1]}", field=names[0])
    bounds = {op: at for op, at in (("$gte", since), ("$lt", until)) if at is not None}
    return {field: bounds} if bounds else {}


def contains(text: str) -> Query:
    """Matches a string holding ``text``, any case."""
    return {"$regex": re.escape(text), "$options": "i"}


def run_filters(req: b.RunList) -> Query:
    """The filters of a run list, beside its scope (one job, or the jobs the actor sees)."""
    until = req.created_before
    if req.before is not None:  # the older cursor: the earlier of the two bounds
        until = req.before if until is None else min(until, req.before)
    query = between(
        "created_at", req.created_after, until, names=("created_after", "created_before")
    )
    fields = (("state", req.state), ("host_id", req.host_id), ("backup_type", req.backup_type))
    return query | {k: v for k, v in fields if v is not None}


def audit_filters(req: m.AuditList) -> Query:
    query = between("at", req.since, req.until, names=("since", "until"))
    if req.resource is not None:
        query["resource"] = req.resource
    if req.by is not None:
        query["actor"] = req.by
    if req.action:
        if req.action.endswith("."):  # anchored: the index on the action still serves
            query["action"] = {"$regex": "^" + re.escape(req.action)}
        else:
            query["action"] = req.action
    return query


def restore_filters(req: r.RestoreList) -> Query:
    query = between(
        "created_at",
        req.created_after,
        req.created_before,
        names=("created_after", "created_before"),
    )
    fields = (
        ("state", req.state),
        ("spec.options.host_id", req.host_id),
        ("spec.backup_set_ids", req.backup_set_id),  # an array: holds that set
    )
    return query | {k: v for k, v in fields if v is not None}


def event_filters(kind: str | None, since: datetime | None) -> Query:
    """Of an event log (``runlog``): the event's type, and its time as its key's prefix."""
    query: Query = {} if kind is None else {"type": kind}
    if since is not None:
        query["key"] = {"$gte": entry_key(since, "")}
    return query


def storage_filters(*, name: str | None, pool: str | None) -> Query:
    query: Query = {} if not name else {"name": contains(name)}
    return query if pool is None else query | {"pool": pool}


def job_filters(*, name: str | None, enabled: bool | None, platform_id: str | None) -> Query:
    query: Query = {}
    if name:
        query["name"] = contains(name)
    if enabled is not None:
        query["enabled"] = enabled
    if platform_id is not None:
        query["platform_ids"] = platform_id
    return query
