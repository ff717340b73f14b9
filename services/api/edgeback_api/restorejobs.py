"""Handlers of restore jobs that are more than a catalog call as it is: the list (the
catalog pages by name, its position rides in the API's opaque cursor) and enable /
disable (one catalog RPC, the flag from the route)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from edgeback_api.paging import Page, encode_cursor, position_of
from edgeback_api.routing import Call
from edgeback_api.wire import PageQuery
from edgeback_core.messages import restorejobs as rj


class RestoreJobQuery(PageQuery, frozen=True, kw_only=True):
    host_id: str | None = None
    enabled: bool | None = None
    name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """Part of the name, any case."""


async def restore_jobs(call: Call) -> Page[rj.RestoreJobInfo]:
    q = call.query_as(RestoreJobQuery)
    after = position_of(q.cursor)
    request = rj.RestoreJobList(
        actor=call.actor,
        host_id=q.host_id,
        enabled=q.enabled,
        name=q.name,
        after=after,
        limit=q.limit,
    )
    reply = await call.api.call(rj.RESTORE_JOB_LIST, request, rj.RestoreJobListReply)
    cursor = None if reply.next_after is None else encode_cursor((reply.next_after,))
    return Page(items=reply.jobs, next_cursor=cursor)


async def enable(call: Call) -> rj.RestoreJobInfo:
    return await _set_enabled(call, enabled=True)


async def disable(call: Call) -> rj.RestoreJobInfo:
    return await _set_enabled(call, enabled=False)


async def _set_enabled(call: Call, *, enabled: bool) -> rj.RestoreJobInfo:
    request = rj.RestoreJobSetEnabled(
        actor=call.actor, job_id=call.params["job_id"], enabled=enabled
    )
    return await call.api.call(rj.RESTORE_JOB_SET_ENABLED, request, rj.RestoreJobInfo)
