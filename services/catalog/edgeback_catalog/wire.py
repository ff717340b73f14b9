"""Conversions between the catalog's domain values and its wire structs."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from edgeback_catalog.access import AuditLog
from edgeback_catalog.domain import (
    CephStorage,
    Group,
    Job,
    Platform,
    RegisteredPool,
    Run,
    RunTransition,
    User,
)
from edgeback_catalog.hosts import HostView
from edgeback_catalog.listfilters import audit_filters
from edgeback_core.messages import catalog as m
from edgeback_core.messages import jobs as j


def host_info(view: HostView) -> m.HostInfo:
    host = view.host
    return m.HostInfo(
        id=host.id,
        hostname=host.hostname,
        version=host.version,
        capacity_bytes=host.capacity_bytes,
        active=host.active,
        online=view.online,
        groups=sorted(host.groups),
        registered_at=host.registered_at,
        last_seen=host.last_seen,
    )


def pool_info(pool: RegisteredPool) -> m.PoolInfo:
    fig, err = pool.status, pool.last_error
    return m.PoolInfo(
        id=pool.id,
        name=pool.name,
        node_url=pool.node_url,
        host_id=pool.host_id,
        description=pool.description,
        kind=pool.kind,
        encrypted=pool.encrypted,
        created_at=pool.created_at,
        created_by=pool.created_by,
        status=m.PoolFigures(**dataclasses.asdict(fig)),
        last_error=None
        if err is None
        else m.PoolCheckFailure(code=err.code, message=err.message, at=err.at),
    )


def platform_info(platform: Platform) -> m.PlatformInfo:
    return m.PlatformInfo(
        id=platform.id,
        name=platform.name,
        address=platform.address,
        port=platform.port,
        ssl=platform.ssl,
        access_key=platform.access_key_masked,
        default_host_id=platform.default_host_id,
        tags=list(platform.tags),
        groups=sorted(platform.groups),
        created_at=platform.created_at,
        updated_at=platform.updated_at,
    )


def storage_info(storage: CephStorage) -> m.StorageInfo:
    return m.StorageInfo(
        id=storage.id,
        platform_id=storage.platform_id,
        name=storage.name,
        client_id=storage.client_id,
        conf_path=storage.conf_path,
        host_id=storage.host_id,
        pool=storage.pool,
        volume_template=storage.templates.volume,
        snapshot_template=storage.templates.snapshot,
        instance_template=storage.templates.instance,
        rbd_client="krbd" if storage.rbd_client == "krbd" else "librbd",
        created_at=storage.created_at,
    )


def group_info(group: Group) -> m.GroupInfo:
    return m.GroupInfo(name=group.name, description=group.description, created_at=group.created_at)


def user_info(user: User) -> m.UserInfo:
    return m.UserInfo(
        name=user.name,
        role=cast(m.RoleName, str(user.role)),
        groups=sorted(user.groups),
        created_at=user.created_at,
    )


def _step(step: RunTransition) -> m.RunStep:
    before = None if step.from_state is None else cast(m.RunStateName, str(step.from_state))
    return m.RunStep(
        seq=step.seq,
        from_state=before,
        to_state=cast(m.RunStateName, str(step.to_state)),
        request_id=step.request_id,
        reason=step.reason,
        at=step.at,
    )


def run_info(run: Run) -> m.RunInfo:
    return m.RunInfo(
        id=run.id,
        job_id=run.job_id,
        host_id=run.host_id,
        state=cast(m.RunStateName, str(run.state)),
        version=run.version,
        created_at=run.created_at,
        updated_at=run.updated_at,
        history=[_step(step) for step in run.history],
    )


def job_info(job: Job) -> j.JobInfo:
    return j.JobInfo(
        id=job.id,
        revision=job.revision,
        enabled=job.enabled,
        spec=job.spec,
        groups=sorted(job.groups),
        created_by=job.created_by,
        created_at=job.created_at,
        updated_at=job.updated_at,
        schedule_anchor=job.schedule_anchor,
        next_due=job.next_due,
        last_fired=job.last_fired,
        last_due=job.last_due,
    )


async def audit_entries(audit: AuditLog, req: m.AuditList) -> m.AuditListReply:
    docs = await audit.entries(
        limit=max(1, min(req.limit, 1000)), before=req.before, match=audit_filters(req)
    )
    keep: tuple[str, ...] = ("at", "actor", "role", "action", "resource")
    entries = [
        m.AuditEntry(id=doc["_id"], **{k: cast(dict[str, Any], doc)[k] for k in keep})
        for doc in docs
    ]
    return m.AuditListReply(entries=entries)
