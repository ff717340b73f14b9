"""Handlers of restore points, restores and the event logs of runs and restores: the
catalog pages them (newest first, or oldest first for logs) and its position rides in
the API's opaque cursor. The catalog scopes each: an operator sees the points of the
jobs it sees and the restores of the backup hosts its groups are authorized on (as for
jobs), and the events of the runs and restores it sees."""

from __future__ import annotations

from edgeback_api.paging import Page, encode_cursor, position_of
from edgeback_api.routing import Call
from edgeback_api.wire import (
    RestoreEventQuery,
    RestorePointQuery,
    RestoreQuery,
    RunEventQuery,
)
from edgeback_core.errors import InvalidInputError
from edgeback_core.messages import backups as b
from edgeback_core.messages import restores as r
from edgeback_core.messages.jobs import PoolRef


def _after(cursor: str | None) -> str | None:
    """The catalog's position inside one of our cursors."""
    return position_of(cursor)


def _cursor(after: str | None) -> str | None:
    return None if after is None else encode_cursor((after,))


async def points(call: Call) -> Page[r.RestorePoint]:
    q = call.query_as(RestorePointQuery)
    if q.node_url is not None and q.pool is None:
        raise InvalidInputError("node_url narrows a pool: give pool too", field="node_url")
    pool = None if q.pool is None else PoolRef(node_url=q.node_url or "", name=q.pool)
    request = r.RestorePointsQuery(
        actor=call.actor,
        vm=q.vm,
        vm_id=q.vm_id,
        pool=pool,
        taken_after=q.taken_after,
        taken_before=q.taken_before,
        limit=q.limit,
        after=_after(q.cursor),
    )
    reply = await call.api.call(r.RESTORE_POINTS, request, r.RestorePointsReply)
    return Page(items=reply.points, next_cursor=_cursor(reply.next_after))


async def restores(call: Call) -> Page[r.RestoreInfo]:
    q = call.query_as(RestoreQuery)
    request = r.RestoreList(
        actor=call.actor,
        state=q.state,
        host_id=q.host_id,
        backup_set_id=q.backup_set_id,
        created_after=q.created_after,
        created_before=q.created_before,
        limit=q.limit,
        after=_after(q.cursor),
    )
    reply = await call.api.call(r.RESTORE_LIST, request, r.RestoreListReply)
    return Page(items=reply.restores, next_cursor=_cursor(reply.next_after))


async def restore_events(call: Call) -> Page[r.RestoreLogEntry]:
    q = call.query_as(RestoreEventQuery)
    request = r.RestoreEventsGet(
        actor=call.actor,
        restore_id=call.params["restore_id"],
        type=q.type,
        since=q.since,
        after=_after(q.cursor),
        limit=q.limit,
    )
    reply = await call.api.call(r.RESTORE_EVENTS, request, r.RestoreEventsReply)
    return Page(items=reply.events, next_cursor=_cursor(reply.next_after))


async def run_events(call: Call) -> Page[b.RunLogEntry]:
    q = call.query_as(RunEventQuery)
    request = b.RunEventsGet(
        actor=call.actor,
        run_id=call.params["run_id"],
        type=q.type,
        since=q.since,
        after=_after(q.cursor),
        limit=q.limit,
    )
    reply = await call.api.call(b.RUN_EVENTS, request, b.RunEventsReply)
    return Page(items=reply.events, next_cursor=_cursor(reply.next_after))
