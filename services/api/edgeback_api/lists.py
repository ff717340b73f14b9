"""Handlers of the lists (paged and filtered) and of the reads the catalog cannot
scope by itself (one run or backup set follows its job's visibility). The catalog
filters, scopes and pages the lists of jobs, runs, backup sets and the audit log in its
query; the short whole lists it answers (hosts, platforms, storages, users, groups) are
paged here."""

from __future__ import annotations

from edgeback_api.paging import Page, encode_cursor, page_of, position_of
from edgeback_api.routing import Call
from edgeback_api.wire import (
    AuditQuery,
    BackupSetQuery,
    BrowseQuery,
    GroupQuery,
    HostQuery,
    JobQuery,
    PlatformQuery,
    RunQuery,
    RunsQuery,
    StorageQuery,
    UserQuery,
)
from edgeback_core.errors import InvalidInputError, NotFoundError
from edgeback_core.messages import auth as a
from edgeback_core.messages import backups as b
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import jobs as j
from edgeback_core.messages import worker as w


async def hosts(call: Call) -> Page[m.HostInfo]:
    q = call.query_as(HostQuery)
    found = (
        await call.api.call(names.HOST_LIST, m.HostList(actor=call.actor), m.HostListReply)
    ).hosts
    kept = [
        h
        for h in found
        if q.active in (None, h.active)
        and q.online in (None, h.online)
        and (q.group is None or q.group in h.groups)
    ]
    return page_of(kept, lambda h: (h.id,), q.cursor, q.limit)


async def platforms(call: Call) -> Page[m.PlatformInfo]:
    q = call.query_as(PlatformQuery)
    request = m.PlatformList(actor=call.actor, tag=q.tag)
    found = (await call.api.call(names.PLATFORM_LIST, request, m.PlatformListReply)).platforms
    part = (q.name or "").casefold()
    kept = [p for p in found if part in p.name.casefold()]
    return page_of(kept, lambda p: (p.name, p.id), q.cursor, q.limit)


async def storages(call: Call) -> Page[m.StorageInfo]:
    q = call.query_as(StorageQuery)
    request = m.StorageList(
        actor=call.actor, platform_id=call.params["platform_id"], name=q.name, pool=q.pool
    )
    found = (await call.api.call(names.STORAGE_LIST, request, m.StorageListReply)).storages
    return page_of(found, lambda s: (s.name, s.id), q.cursor, q.limit)


async def browse(call: Call) -> w.PlatformInventory:
    q = call.query_as(BrowseQuery)
    request = m.PlatformBrowse(
        actor=call.actor,
        platform_id=call.params["platform_id"],
        keyword=q.keyword,
        host_id=q.host_id,
    )
    return await call.api.call(names.PLATFORM_BROWSE, request, w.PlatformInventory, slow=True)


async def jobs(call: Call) -> Page[j.JobInfo]:
    q = call.query_as(JobQuery)
    after = position_of(q.cursor)
    request = j.JobList(
        actor=call.actor,
        host_id=q.host_id,
        name=q.name,
        enabled=q.enabled,
        platform_id=q.platform_id,
        after=after,
        limit=q.limit,
    )
    reply = await call.api.call(j.JOB_LIST, request, j.JobListReply)
    cursor = None if reply.next_after is None else encode_cursor((reply.next_after,))
    return Page(items=reply.jobs, next_cursor=cursor)


async def runs(call: Call) -> Page[m.RunInfo]:
    return await _runs(call, call.query_as(RunQuery), job_id=call.params["job_id"])


async def all_runs(call: Call) -> Page[m.RunInfo]:
    q = call.query_as(RunsQuery)
    return await _runs(call, q, job_id=q.job_id, host_id=q.host_id)


async def _runs(
    call: Call, q: RunQuery, *, job_id: str | None, host_id: str | None = None
) -> Page[m.RunInfo]:
    """One catalog query, scoped there as the job reads are (one job: it must be
    visible; none: every job the caller sees)."""
    request = b.RunList(
        actor=call.actor,
        job_id=job_id,
        host_id=host_id,
        state=q.state,
        backup_type=q.backup_type,
        created_after=q.created_after,
        created_before=q.created_before,
        after=_position(q.cursor),
        limit=q.limit,
    )
    reply = await call.api.call(b.RUN_LIST, request, b.RunListReply)
    return Page(items=reply.runs, next_cursor=_cursor(reply.next_after))


async def run_detail(call: Call) -> b.RunDetail:
    request = b.RunDetailGet(actor=call.actor, run_id=call.params["run_id"])
    detail = await call.api.call(b.RUN_DETAIL, request, b.RunDetail)
    await _require_job(call, detail.run.job_id, f"run {detail.run.id} not found")
    return detail


async def backup_sets(call: Call) -> Page[b.BackupSetInfo]:
    """Filtered, scoped (as runs are) and paged by the catalog: every set is reachable."""
    q = call.query_as(BackupSetQuery)
    if q.job_id is None and q.vm_id is None and q.run_id is None:
        raise InvalidInputError("give at least one of job_id, vm_id, run_id", field="job_id")
    request = b.BackupSetList(
        actor=call.actor,
        job_id=q.job_id,
        vm_id=q.vm_id,
        run_id=q.run_id,
        complete=q.complete,
        after=_position(q.cursor),
        limit=q.limit,
    )
    reply = await call.api.call(b.BACKUP_SET_LIST, request, b.BackupSetListReply)
    return Page(items=reply.backup_sets, next_cursor=_cursor(reply.next_after))


async def backup_set(call: Call) -> b.BackupSetWithDisks:
    set_id = call.params["backup_set_id"]
    request = b.BackupSetGet(actor=call.actor, backup_set_id=set_id)
    found = await call.api.call(b.BACKUP_SET_GET, request, b.BackupSetWithDisks)
    if found.backup_set is None:
        raise NotFoundError(f"backup set {set_id} not found")
    await _require_job(call, found.backup_set.job_id, f"backup set {set_id} not found")
    return found


async def users(call: Call) -> Page[m.UserInfo]:
    q = call.query_as(UserQuery)
    found = (await call.api.call(a.USER_LIST, a.UserList(actor=call.actor), a.UserListReply)).users
    kept = [
        u for u in found if q.role in (None, u.role) and (q.group is None or q.group in u.groups)
    ]
    return page_of(kept, lambda u: (u.name,), q.cursor, q.limit)


async def groups(call: Call) -> Page[m.GroupInfo]:
    q = call.query_as(GroupQuery)
    request = m.GroupList(actor=call.actor, name=q.name)
    found = (await call.api.call(names.GROUP_LIST, request, m.GroupListReply)).groups
    return page_of(found, lambda g: (g.name,), q.cursor, q.limit)


async def audit(call: Call) -> Page[m.AuditEntry]:
    q = call.query_as(AuditQuery)
    before = position_of(q.cursor)
    request = m.AuditList(
        actor=call.actor,
        resource=q.resource,
        by=q.actor,
        action=q.action,
        since=q.since,
        until=q.until,
        limit=q.limit,
        before=before,
    )
    entries = (await call.api.call(names.AUDIT_LIST, request, m.AuditListReply)).entries
    more = len(entries) == q.limit
    return Page(items=entries, next_cursor=encode_cursor((entries[-1].id,)) if more else None)


async def _require_job(call: Call, job_id: str, message: str) -> None:
    """Runs and backup sets are seen by whoever sees their job (as the catalog scopes jobs)."""
    if not await _visible_jobs(call, {job_id}):
        raise NotFoundError(message)


async def _visible_jobs(call: Call, job_ids: set[str]) -> set[str]:
    visible = set()
    for job_id in sorted(job_ids):
        try:
            await call.api.call(j.JOB_GET, j.JobGet(actor=call.actor, job_id=job_id), j.JobInfo)
        except NotFoundError:
            continue
        visible.add(job_id)
    return visible


def _position(cursor: str | None) -> str | None:
    """The catalog's position inside one of our cursors."""
    return position_of(cursor)


def _cursor(after: str | None) -> str | None:
    return None if after is None else encode_cursor((after,))
