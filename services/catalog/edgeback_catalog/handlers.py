"""The catalog's RPC handlers and its consumers (heartbeats, ``StartRun``, run
events), and how they go on a bus.

Requests refuse unknown fields; the bus answers a malformed one (unknown field, wrong
type, missing field) with ``invalid_input`` and the decoder's reason before any
handler runs, so it changes nothing.
"""

from __future__ import annotations

from typing import cast

from edgeback_catalog import wire
from edgeback_catalog.authrpc import AuthRpc
from edgeback_catalog.backuprpc import BackupRpc
from edgeback_catalog.domain import Actor, JobId, PlatformId, PoolId, RunId, StorageId, UserName
from edgeback_catalog.gate import Gate, current_actor
from edgeback_catalog.hosts import Heartbeat
from edgeback_catalog.jobrpc import JobRpc
from edgeback_catalog.listfilters import contains, storage_filters
from edgeback_catalog.platforms import PlatformChanges, PlatformDraft
from edgeback_catalog.principals import Identities
from edgeback_catalog.restorejobrpc import RestoreJobRpc
from edgeback_catalog.restorerpc import RestoreRpc
from edgeback_catalog.retentionrpc import RetentionRpc
from edgeback_catalog.routes import Route
from edgeback_catalog.runcommands import RunMessages
from edgeback_catalog.runs import TransitionRequest
from edgeback_catalog.runstate import RunState
from edgeback_catalog.schedulerpc import ScheduleRpc
from edgeback_catalog.service import Catalog
from edgeback_catalog.storages import StorageDraft
from edgeback_core.bus.port import Bus, ConsumerHandle, Envelope
from edgeback_core.bus.topology import (
    CATALOG_HEARTBEATS,
    CATALOG_RESTORE_LOG,
    CATALOG_RUN_LOG,
    CATALOG_RUN_STARTS,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import restores as rs
from edgeback_core.messages import runs as r
from edgeback_core.messages import worker as w
from edgeback_platform.models import HypervisorId


class CatalogRpc:
    """One method per RPC; :meth:`routes` names them."""

    def __init__(self, catalog: Catalog, identities: Identities) -> None:
        self._c = self.catalog = catalog
        self.gate = Gate(catalog.db, catalog.audit, catalog.users, identities)

    def routes(self) -> list[Route]:
        r = Route
        return [
            r(names.HOST_ACTIVATE, m.HostActivate, self.host_activate),
            r(names.HOST_AUTHORIZE, m.HostAuthorize, self.host_authorize),
            r(names.HOST_ACTIVATE_MANY, m.HostActivateMany, self.host_activate_many),
            r(names.HOST_AUTHORIZE_MANY, m.HostAuthorizeMany, self.host_authorize_many),
            r(names.HOST_GET, m.HostGet, self.host_get),
            r(names.HOST_LIST, m.HostList, self.host_list),
            r(names.PLATFORM_REGISTER, m.PlatformRegister, self.platform_register),
            r(names.PLATFORM_RENAME, m.PlatformRename, self.platform_rename),
            r(names.PLATFORM_UPDATE, m.PlatformUpdate, self.platform_update),
            r(names.PLATFORM_SET_TAGS, m.PlatformSetTags, self.platform_set_tags),
            r(names.PLATFORM_UNREGISTER, m.PlatformUnregister, self.platform_unregister),
            r(names.PLATFORM_GET, m.PlatformGet, self.platform_get),
            r(names.PLATFORM_LIST, m.PlatformList, self.platform_list),
            r(names.PLATFORM_CREDENTIALS, m.PlatformCredentialsGet, self.credentials),
            r(names.PLATFORM_BROWSE, m.PlatformBrowse, self.platform_browse),
            r(names.STORAGE_ADD, m.StorageAdd, self.storage_add),
            r(names.STORAGE_REMOVE, m.StorageRemove, self.storage_remove),
            r(names.STORAGE_GET, m.StorageGet, self.storage_get),
            r(names.STORAGE_LIST, m.StorageList, self.storage_list),
            r(names.POOL_REGISTER, m.PoolRegister, self.pool_register),
            r(names.POOL_LIST, m.PoolList, self.pool_list),
            r(names.POOL_GET, m.PoolGet, self.pool_get),
            r(names.POOL_EDIT, m.PoolEdit, self.pool_edit),
            r(names.POOL_DELETE, m.PoolDelete, self.pool_delete),
            r(names.POOL_REFRESH, m.PoolRefresh, self.pool_refresh),
            r(names.GROUP_CREATE, m.GroupCreate, self.group_create),
            r(names.GROUP_LIST, m.GroupList, self.group_list),
            r(names.USER_CREATE, m.UserCreate, self.user_create),
            r(names.USER_SET_GROUPS, m.UserSetGroups, self.user_set_groups),
            r(names.USER_GET, m.UserGet, self.user_get),
            r(names.RUN_CREATE, m.RunCreate, self.run_create),
            r(names.RUN_TRANSITION, m.RunTransition, self.run_transition),
            r(names.RUN_GET, m.RunGet, self.run_get),
            r(names.AUDIT_LIST, m.AuditList, self.audit_list),
        ]

    # --- hosts --------------------------------------------------------------------
    async def on_heartbeat(self, beat: m.HostHeartbeat, envelope: Envelope) -> None:
        await self.gate.heartbeat(envelope, beat.host_id)
        await self._c.hosts.heartbeat(
            Heartbeat(
                host_id=BackupHostId(beat.host_id),
                hostname=beat.hostname,
                version=beat.version,
                capacity_bytes=beat.capacity_bytes,
            )
        )

    async def host_activate(self, req: m.HostActivate) -> m.HostInfo:
        actor = current_actor()
        await self._c.hosts.activate(actor, BackupHostId(req.host_id))
        return wire.host_info(await self._c.hosts.get(actor, BackupHostId(req.host_id)))

    async def host_authorize(self, req: m.HostAuthorize) -> m.HostInfo:
        actor = current_actor()
        await self._c.hosts.authorize(actor, BackupHostId(req.host_id), req.groups)
        return wire.host_info(await self._c.hosts.get(actor, BackupHostId(req.host_id)))

    async def host_activate_many(self, req: m.HostActivateMany) -> m.HostListReply:
        actor = current_actor()
        done = await self._c.hosts.activate_many(actor, [BackupHostId(h) for h in req.host_ids])
        return await self._hosts_reply(actor, [host.id for host in done])

    async def host_authorize_many(self, req: m.HostAuthorizeMany) -> m.HostListReply:
        actor = current_actor()
        ids = [BackupHostId(h) for h in req.host_ids]
        done = await self._c.hosts.authorize_many(actor, ids, req.groups)
        return await self._hosts_reply(actor, [host.id for host in done])

    async def _hosts_reply(self, actor: Actor, host_ids: list[BackupHostId]) -> m.HostListReply:
        views = [await self._c.hosts.get(actor, host_id) for host_id in host_ids]
        return m.HostListReply(hosts=[wire.host_info(view) for view in views])

    async def host_get(self, req: m.HostGet) -> m.HostInfo:
        view = await self._c.hosts.get(current_actor(), BackupHostId(req.host_id))
        return wire.host_info(view)

    async def host_list(self, req: m.HostList) -> m.HostListReply:
        views = await self._c.hosts.list(current_actor())
        return m.HostListReply(hosts=[wire.host_info(v) for v in views])

    # --- platforms ----------------------------------------------------------------
    async def platform_register(self, req: m.PlatformRegister) -> m.PlatformInfo:
        draft = PlatformDraft(
            name=req.name,
            address=req.address,
            port=req.port,
            ssl=req.ssl,
            access_key=req.access_key,
            secret_key=req.secret_key,
            default_host_id=BackupHostId(req.default_host_id),
            tags=tuple(req.tags),
            groups=tuple(req.groups),
        )
        platform = await self._c.platforms.register(current_actor(), draft)
        return wire.platform_info(platform)

    async def platform_rename(self, req: m.PlatformRename) -> m.PlatformInfo:
        actor, pid = current_actor(), PlatformId(req.platform_id)
        return wire.platform_info(await self._c.platforms.rename(actor, pid, req.name))

    async def platform_update(self, req: m.PlatformUpdate) -> m.PlatformInfo:
        changes = PlatformChanges(
            address=req.address,
            port=req.port,
            ssl=req.ssl,
            access_key=req.access_key,
            secret_key=req.secret_key,
            default_host_id=None
            if req.default_host_id is None
            else BackupHostId(req.default_host_id),
            groups=None if req.groups is None else tuple(req.groups),
        )
        actor, pid = current_actor(), PlatformId(req.platform_id)
        return wire.platform_info(await self._c.platforms.update(actor, pid, changes))

    async def platform_set_tags(self, req: m.PlatformSetTags) -> m.PlatformInfo:
        actor, pid = current_actor(), PlatformId(req.platform_id)
        return wire.platform_info(await self._c.platforms.set_tags(actor, pid, req.tags))

    async def platform_unregister(self, req: m.PlatformUnregister) -> m.Done:
        actor, pid = current_actor(), PlatformId(req.platform_id)
        await self._c.platforms.unregister(actor, pid)
        return m.Done()

    async def platform_get(self, req: m.PlatformGet) -> m.PlatformInfo:
        actor, pid = current_actor(), PlatformId(req.platform_id)
        return wire.platform_info(await self._c.platforms.get(actor, pid))

    async def platform_list(self, req: m.PlatformList) -> m.PlatformListReply:
        found = await self._c.platforms.list(current_actor(), tag=req.tag)
        return m.PlatformListReply(platforms=[wire.platform_info(p) for p in found])

    async def credentials(self, req: m.PlatformCredentialsGet) -> m.PlatformCredentials:
        actor, pid = current_actor(), PlatformId(req.platform_id)
        keys = await self._c.platforms.credentials(actor, pid)
        return m.PlatformCredentials(
            platform_id=keys.platform_id, access_key=keys.access_key, secret_key=keys.secret_key
        )

    async def platform_browse(self, req: m.PlatformBrowse) -> w.PlatformInventory:
        actor, pid = current_actor(), PlatformId(req.platform_id)
        hypervisor = None if req.host_id is None else HypervisorId(req.host_id)
        return await self._c.platforms.browse(
            actor, pid, keyword=req.keyword, hypervisor_id=hypervisor
        )

    # --- storages -----------------------------------------------------------------
    async def storage_add(self, req: m.StorageAdd) -> m.StorageInfo:
        draft = StorageDraft(
            platform_id=PlatformId(req.platform_id),
            name=req.name,
            host_id=BackupHostId(req.host_id),
            pool=req.pool,
            client_id=req.client_id,
            conf_path=req.conf_path,
            volume_template=req.volume_template,
            snapshot_template=req.snapshot_template,
            instance_template=req.instance_template,
            rbd_client=req.rbd_client,
        )
        storage = await self._c.storages.add(current_actor(), draft)
        return wire.storage_info(storage)

    async def storage_remove(self, req: m.StorageRemove) -> m.Done:
        await self._c.storages.remove(current_actor(), StorageId(req.storage_id))
        return m.Done()

    async def storage_get(self, req: m.StorageGet) -> m.StorageInfo:
        actor = current_actor()
        return wire.storage_info(await self._c.storages.get(actor, StorageId(req.storage_id)))

    async def storage_list(self, req: m.StorageList) -> m.StorageListReply:
        actor = current_actor()
        match = storage_filters(name=req.name, pool=req.pool)
        found = await self._c.storages.list(actor, PlatformId(req.platform_id), match)
        return m.StorageListReply(storages=[wire.storage_info(s) for s in found])

    # --- storage pools ------------------------------------------------------------
    async def pool_register(self, req: m.PoolRegister) -> m.PoolInfo:
        pool = await self._c.pools.register(
            current_actor(),
            name=req.name,
            node_url=req.node_url,
            host_id=BackupHostId(req.host_id),
            description=req.description,
        )
        return wire.pool_info(pool)

    async def pool_list(self, req: m.PoolList) -> m.PoolListReply:
        found = await self._c.pools.list(
            current_actor(), host_id=req.host_id, node_url=req.node_url
        )
        return m.PoolListReply(pools=[wire.pool_info(p) for p in found])

    async def pool_get(self, req: m.PoolGet) -> m.PoolInfo:
        return wire.pool_info(await self._c.pools.get(current_actor(), PoolId(req.pool_id)))

    async def pool_edit(self, req: m.PoolEdit) -> m.PoolInfo:
        host = None if req.host_id is None else BackupHostId(req.host_id)
        pool = await self._c.pools.edit(
            current_actor(), PoolId(req.pool_id), description=req.description, host_id=host
        )
        return wire.pool_info(pool)

    async def pool_delete(self, req: m.PoolDelete) -> m.Done:
        await self._c.pools.delete(current_actor(), PoolId(req.pool_id))
        return m.Done()

    async def pool_refresh(self, req: m.PoolRefresh) -> m.PoolInfo:
        return wire.pool_info(await self._c.pools.refresh(current_actor(), PoolId(req.pool_id)))

    # --- users and groups ---------------------------------------------------------
    async def group_create(self, req: m.GroupCreate) -> m.GroupInfo:
        actor = current_actor()
        group = await self._c.users.create_group(actor, req.name, req.description)
        return wire.group_info(group)

    async def group_list(self, req: m.GroupList) -> m.GroupListReply:
        current_actor().require_admin("listing groups")
        groups = await self._c.users.groups(None if req.name is None else contains(req.name))
        return m.GroupListReply(groups=[wire.group_info(g) for g in groups])

    async def user_create(self, req: m.UserCreate) -> m.UserInfo:
        actor = current_actor()
        user = await self._c.users.create_user(actor, req.name, req.role, req.groups)
        return wire.user_info(user)

    async def user_set_groups(self, req: m.UserSetGroups) -> m.UserInfo:
        actor = current_actor()
        return wire.user_info(await self._c.users.set_groups(actor, req.name, req.groups))

    async def user_get(self, req: m.UserGet) -> m.UserInfo:
        actor = current_actor()
        if actor.name != req.name:
            actor.require_admin("reading another user")
        return wire.user_info(await self._c.users.get(UserName(req.name)))

    # --- runs and audit -----------------------------------------------------------
    async def run_create(self, req: m.RunCreate) -> m.RunInfo:
        actor = current_actor()
        run_id = None if req.run_id is None else RunId(req.run_id)
        run = await self._c.runs.create(actor, JobId(req.job_id), BackupHostId(req.host_id), run_id)
        return wire.run_info(run)

    async def run_transition(self, req: m.RunTransition) -> m.RunTransitionReply:
        current_actor().require_service("changing a run's state")
        outcome = await self._c.runs.transition(
            TransitionRequest(
                run_id=RunId(req.run_id),
                target=RunState(req.target),
                request_id=req.request_id,
                reason=req.reason,
                expected_version=req.expected_version,
            )
        )
        return m.RunTransitionReply(run=wire.run_info(outcome.run), applied=outcome.applied)

    async def run_get(self, req: m.RunGet) -> m.RunInfo:
        return wire.run_info(await self._c.runs.get(RunId(req.run_id)))

    async def audit_list(self, req: m.AuditList) -> m.AuditListReply:
        current_actor().require_admin("reading the audit log")
        return await wire.audit_entries(self._c.audit, req)


async def serve_catalog(bus: Bus, rpc: CatalogRpc) -> list[ConsumerHandle]:
    """Serve every catalog RPC, consume heartbeats, ``StartRun`` and run events on ``bus``,
    all behind the gate (``gate.py``): who may call what is decided by the caller's
    broker user."""
    c = rpc.catalog
    routes = [
        *rpc.routes(),
        *JobRpc(c).routes(),
        *BackupRpc(c).routes(),
        *AuthRpc(c).routes(),
        *ScheduleRpc(c).routes(),
        *RestoreRpc(c, bus).routes(),
        *RestoreJobRpc(c).routes(),
        *RetentionRpc(c.retention).routes(),
    ]
    guarded = [rpc.gate.guard(route) for route in routes]
    handles = [await bus.serve_rpc(r.name, r.handler, r.request_type) for r in guarded]
    handles.append(await bus.consume(CATALOG_HEARTBEATS, rpc.on_heartbeat, m.HostHeartbeat))
    runs = RunMessages(rpc.catalog, bus, rpc.gate)
    handles.append(await bus.consume(CATALOG_RUN_STARTS, runs.on_start_run, r.StartRun))
    # RunEvent is a tagged union of structs: the decoder picks the class by its tag
    events = cast("type[r.RunStarted]", r.RunEvent)
    handles.append(await bus.consume(CATALOG_RUN_LOG, runs.on_run_event, events))
    restore_events = cast("type[rs.RestoreStarted]", rs.RestoreEvent)
    handles.append(await bus.consume(CATALOG_RESTORE_LOG, runs.on_restore_event, restore_events))
    return handles
