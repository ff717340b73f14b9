"""Storage pools registered in the catalog, checked from their backup host: the catalog
(real catalog DB) asks a worker over the bus (in-memory and RabbitMQ), the worker asks
a real storage node on loopback with its own token for the pool. Refusals carry a
stable code and store nothing; operators see the pools of their backup hosts only; a
pool that a job writes to cannot be deleted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from aiohttp import web
from pymongo import AsyncMongoClient
from tests.integration.conftest import TEST_IDENTITIES, BusOpener
from tests.integration.test_resource_checks import active_host
from tests.support.processes import free_port
from tests.support.storage_node import TOKEN, Node, make_pools, running_node, scoped_token
from tests.support.storage_node import chunk as make_chunk

from edgeback_catalog.domain import Actor, Role
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.platforms import PlatformDraft
from edgeback_catalog.probes import WorkerProbe
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import CATALOG_HEARTBEATS
from edgeback_core.errors import EdgebackError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import jobs as j
from edgeback_core.settings import Secret
from edgeback_worker.handlers import serve_worker_rpcs
from edgeback_worker.settings import WorkerSettings

pytestmark = pytest.mark.integration

ADMIN = m.ActorRef()  # the tests' broker user, acting as every service
T = 30.0
R = TypeVar("R", bound=msgspec.Struct)


@dataclass
class World:
    bus: Bus
    db: CatalogDb
    catalog: Catalog
    host: str
    node: Node
    access: Path
    """The worker's pool access directory."""

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)

    async def code_of(self, name: str, req: msgspec.Struct) -> str:
        with pytest.raises(EdgebackError) as err:
            await self.bus.call(name, req, m.Done, timeout=T)
        return err.value.code

    def register(self, name: str = "dd", **kw: Any) -> m.PoolRegister:
        actor = kw.pop("actor", ADMIN)
        fields = {"name": name, "node_url": self.node.url, "host_id": self.host} | kw
        return m.PoolRegister(actor=actor, **fields)

    async def registered(self, name: str = "dd", **kw: Any) -> m.PoolInfo:
        return await self.call(names.POOL_REGISTER, self.register(name, **kw), m.PoolInfo)

    async def actions(self) -> list[str]:
        return [str(doc["action"]) for doc in await self.db.find(Coll.AUDIT_LOG, {})]


@pytest.fixture
async def world(open_bus: BusOpener, mongo_url: str, tmp_path: Path) -> AsyncIterator[World]:
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    access = tmp_path / "access"
    access.mkdir()
    (access / "dd.token").write_text(scoped_token("host-dd") + "\n")
    (access / "std.token").write_text(scoped_token("host-dd"))  # no right on std
    (access / "tiny.token").write_text("not-a-token-of-this-node-0123456789")
    (access / "nope.token").write_text(TOKEN)  # every pool, but the node has no "nope"
    make_pools(tmp_path / "srv")
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(running_node(tmp_path / "srv"))
        db = await stack.enter_async_context(
            CatalogDb.open(mongo_url, f"test_pools_{uuid.uuid4().hex[:12]}")
        )
        stack.push_async_callback(db.drop)
        catalog_bus: Bus = await stack.enter_async_context(open_bus())
        catalog = Catalog.build(db, box, probe=WorkerProbe(catalog_bus))
        await serve_catalog(catalog_bus, CatalogRpc(catalog, TEST_IDENTITIES))
        worker_bus: Bus = await stack.enter_async_context(open_bus())
        host = f"bk-{uuid.uuid4().hex[:8]}"
        await serve_worker_rpcs(worker_bus, WorkerSettings(host_id=host, pool_dir=str(access)))
        client: Bus = await stack.enter_async_context(open_bus())
        await active_host(client, db, host)
        yield World(client, db, catalog, host, node, access)
        if isinstance(catalog_bus, AmqpBus):
            await catalog_bus.delete_topology([CATALOG_HEARTBEATS])


async def test_a_pool_is_registered_with_the_nodes_status_and_refreshed(world: World) -> None:
    pool = await world.registered(description="site A, dedup")
    assert (pool.name, pool.node_url, pool.host_id) == ("dd", world.node.url, world.host)
    assert (pool.kind, pool.encrypted, pool.last_error) == ("dedup", False, None)
    fig = pool.status
    assert fig.capacity_bytes > 0 and 0 < fig.free_bytes <= fig.capacity_bytes
    assert (fig.chunks, fig.manifests, fig.quota_bytes) == (0, 0, None)
    assert await world.call(
        names.POOL_GET, m.PoolGet(actor=ADMIN, pool_id=pool.id), m.PoolInfo
    ) == (pool)
    for filters, found in (
        ({}, [pool]),
        ({"host_id": world.host}, [pool]),
        ({"host_id": "bk-other"}, []),
        ({"node_url": world.node.url + "/", "host_id": world.host}, [pool]),
        ({"node_url": "http://elsewhere:8710"}, []),
    ):
        listed = await world.call(
            names.POOL_LIST, m.PoolList(actor=ADMIN, **filters), m.PoolListReply
        )
        assert listed.pools == found, filters
    assert await world.actions() == ["host.registered", "host.activated", "pool.registered"]

    digest, record = make_chunk(world.node.key("dd"), b"x" * 70_000)
    async with world.node.client("dd") as data:
        await data.put_chunk(digest, record)
    refresh = m.PoolRefresh(actor=ADMIN, pool_id=pool.id)
    fresh = await world.call(names.POOL_REFRESH, refresh, m.PoolInfo)
    assert fresh.status.chunks == 1 and fresh.status.stored_bytes > 0
    assert fresh.status.checked_at >= pool.status.checked_at

    (world.access / "dd.token").unlink()  # the host lost its access: recorded, figures kept
    failed = await world.call(names.POOL_REFRESH, refresh, m.PoolInfo)
    assert failed.last_error is not None and failed.last_error.code == "pool_access_missing"
    assert failed.status == fresh.status
    (world.access / "dd.token").write_text(scoped_token("host-dd"))
    healed = await world.call(names.POOL_REFRESH, refresh, m.PoolInfo)
    assert healed.last_error is None and healed.status.chunks == 1
    refreshes = await world.db.find(Coll.AUDIT_LOG, {"action": "pool.refreshed"})
    assert [(d["resource"], d["details"]) for d in refreshes] == [
        (f"pool/{pool.id}", {"ok": True}),
        (f"pool/{pool.id}", {"ok": False, "code": "pool_access_missing"}),
        (f"pool/{pool.id}", {"ok": True}),
    ]


async def test_refusals_have_stable_codes_and_store_nothing(world: World) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    cases = {
        "pool_not_on_node": world.register("nope"),
        "pool_token_refused": world.register("std"),  # 403: no right on this pool
        "pool_access_missing": world.register("ghost"),  # no ghost.token on the host
        "storage_node_unreachable": world.register(node_url=dead),
        "unknown_reference": world.register(host_id="bk-nobody"),
        "invalid_input": world.register(node_url="ftp://node"),
    }
    for code, request in cases.items():
        assert await world.code_of(names.POOL_REGISTER, request) == code, code
    assert await world.code_of(names.POOL_REGISTER, world.register("tiny")) == (
        "pool_token_refused"  # 401: a token the node does not know
    )
    assert await world.db.find(Coll.POOLS, {}) == []
    assert "pool.registered" not in await world.actions()

    async with not_a_node() as other:  # a web server at a mistyped URL: 400, not a 500
        request = world.register(node_url=other)
        assert await world.code_of(names.POOL_REGISTER, request) == "not_a_storage_node"
    assert await world.db.find(Coll.POOLS, {}) == []

    first = await world.registered()
    again = world.register(node_url=world.node.url + "/")
    assert await world.code_of(names.POOL_REGISTER, again) == "already_exists"
    assert [doc["_id"] for doc in await world.db.find(Coll.POOLS, {})] == [first.id]


@asynccontextmanager
async def not_a_node() -> AsyncIterator[str]:
    """The URL of a web server that answers every GET with a page, as a typo could."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_edit_changes_description_and_checks_a_new_host_first(world: World) -> None:
    pool = await world.registered()
    edit = m.PoolEdit(actor=ADMIN, pool_id=pool.id, description="moved to rack 2")
    edited = await world.call(names.POOL_EDIT, edit, m.PoolInfo)
    assert edited.description == "moved to rack 2" and edited.host_id == world.host
    silent = await active_host(world.bus, world.db, f"bk-{uuid.uuid4().hex[:8]}")  # no worker
    to_silent = m.PoolEdit(actor=ADMIN, pool_id=pool.id, host_id=silent)
    assert await world.code_of(names.POOL_EDIT, to_silent) == "backup_host_unreachable"
    got = await world.call(names.POOL_GET, m.PoolGet(actor=ADMIN, pool_id=pool.id), m.PoolInfo)
    assert got == edited
    assert (await world.actions()).count("pool.edited") == 1


async def test_operators_see_the_pools_of_their_backup_hosts_only(world: World) -> None:
    pool = await world.registered()
    for group in ("ops", "dev"):
        await world.call(names.GROUP_CREATE, m.GroupCreate(actor=ADMIN, name=group), m.GroupInfo)
    authorize = m.HostAuthorize(actor=ADMIN, host_id=world.host, groups=["ops"])
    await world.call(names.HOST_AUTHORIZE, authorize, m.HostInfo)
    for name, group in (("o", "ops"), ("d", "dev")):
        user = m.UserCreate(actor=ADMIN, name=name, role="operator", groups=[group])
        await world.call(names.USER_CREATE, user, m.UserInfo)
    ops, dev = m.ActorRef(user="o"), m.ActorRef(user="d")

    mine = await world.call(names.POOL_LIST, m.PoolList(actor=ops), m.PoolListReply)
    assert [p.id for p in mine.pools] == [pool.id]
    on_host = m.PoolList(actor=ops, host_id=world.host)
    assert [p.id for p in (await world.call(names.POOL_LIST, on_host, m.PoolListReply)).pools] == [
        pool.id
    ]
    refreshed = await world.call(
        names.POOL_REFRESH, m.PoolRefresh(actor=ops, pool_id=pool.id), m.PoolInfo
    )
    assert refreshed.last_error is None
    theirs = await world.call(names.POOL_LIST, m.PoolList(actor=dev), m.PoolListReply)
    assert theirs.pools == []
    for request in (
        m.PoolGet(actor=dev, pool_id=pool.id),
        m.PoolRefresh(actor=dev, pool_id=pool.id),
    ):
        rpc = names.POOL_GET if isinstance(request, m.PoolGet) else names.POOL_REFRESH
        assert await world.code_of(rpc, request) == "not_found"
    assert await world.code_of(names.POOL_REGISTER, world.register("std", actor=ops)) == (
        "permission_denied"
    )
    assert await world.code_of(names.POOL_DELETE, m.PoolDelete(actor=ops, pool_id=pool.id)) == (
        "permission_denied"
    )


async def test_a_pool_a_job_writes_to_cannot_be_deleted(world: World) -> None:
    pool = await world.registered()
    root = Actor(name="root", role=Role.ADMIN)
    draft = PlatformDraft(
        name="edge-1", address="127.0.0.1", port=30188, ssl=False, access_key="AKEDGE0001",
        secret_key="sk-edge-0001", default_host_id=BackupHostId(world.host),
    )  # fmt: skip
    unchecked = Catalog.build(world.db, SecretBox.from_setting(Secret(SecretBox.generate_key())),
                              offline_after=timedelta(seconds=60), probe=None)  # fmt: skip
    platform = await unchecked.platforms.register(root, draft)
    target = j.PoolRef(node_url=world.node.url + "/", name="dd")  # the job's URL has a slash
    spec = j.JobSpec(
        name="nightly",
        content=j.JobContent(
            vms=[j.VmSelection(platform_id=platform.id, physical_host_id="hv1", vm_id="vm-1")]
        ),
        target=j.JobTarget(host_id=world.host, pool=target),
    )
    job = await world.call(j.JOB_CREATE, j.JobCreate(actor=ADMIN, spec=spec), j.JobInfo)
    delete = m.PoolDelete(actor=ADMIN, pool_id=pool.id)
    assert await world.code_of(names.POOL_DELETE, delete) == "pool_in_use"
    assert len(await world.db.find(Coll.POOLS, {})) == 1

    await world.call(j.JOB_DELETE, j.JobDelete(actor=ADMIN, job_id=job.id), m.Done)
    await world.call(names.POOL_DELETE, delete, m.Done)
    assert await world.code_of(names.POOL_GET, m.PoolGet(actor=ADMIN, pool_id=pool.id)) == (
        "not_found"
    )
    assert (await world.actions())[-2:] == ["job.deleted", "pool.deleted"]


async def test_the_old_unique_pool_name_index_is_dropped_at_start(mongo_url: str) -> None:
    """Two nodes may hold pools of the same name: a catalog that had the index of before
    (``name`` unique) loses it when it starts, and keeps the (node URL, name) one."""
    name = f"test_pools_ix_{uuid.uuid4().hex[:12]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await client[name][Coll.POOLS].create_index(
            [("name", 1)], unique=True, name="name_1_unique"
        )
        async with CatalogDb.open(mongo_url, name) as db:
            try:
                names = await db.index_names(Coll.POOLS)
                assert "name_1_unique" not in names
                assert "node_url_1_name_1_unique" in names
                await db.migrate()  # again: nothing left to drop
            finally:
                await db.drop()
    finally:
        await client.close()
