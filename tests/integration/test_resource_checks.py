"""Platforms and Ceph storages are checked from their backup host before the catalog
stores them, and browsed through it: the catalog (real catalog DB) and a worker talk
over the bus (in-memory and RabbitMQ); the worker calls the emulator (its own process)
and the real Ceph cluster. A refusal carries the worker's code and stores nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import pytest
from tests.integration.conftest import TEST_IDENTITIES, BusOpener
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import free_port

from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.probes import WorkerProbe
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import CATALOG_HEARTBEATS, HOST_HEARTBEAT
from edgeback_core.errors import EdgebackError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import worker as w
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
    host: str
    cloud: EmulatorProcess
    ceph_conf: str

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)

    async def code_of(self, name: str, req: msgspec.Struct) -> str:
        with pytest.raises(EdgebackError) as err:
            await self.bus.call(name, req, m.Done, timeout=T)
        return err.value.code

    def register(self, **kw: Any) -> m.PlatformRegister:
        fields: dict[str, Any] = {
            "actor": ADMIN,
            "name": "edge-1",
            "address": "127.0.0.1",
            "port": self.cloud.port,
            "ssl": False,
            "access_key": self.cloud.access_key,
            "secret_key": self.cloud.secret_key,
            "default_host_id": self.host,
        } | kw
        return msgspec.convert(fields, m.PlatformRegister)

    def storage(self, platform_id: str, **kw: Any) -> m.StorageAdd:
        fields: dict[str, Any] = {
            "actor": ADMIN,
            "platform_id": platform_id,
            "name": "ceph-1",
            "host_id": self.host,
            "pool": "rbd",
            "conf_path": self.ceph_conf,
        } | kw
        return msgspec.convert(fields, m.StorageAdd)

    async def stored(self, coll: Coll) -> list[dict[str, Any]]:
        return await self.db.find(coll, {})

    async def actions(self) -> list[str]:
        return [str(doc["action"]) for doc in await self.stored(Coll.AUDIT_LOG)]


@pytest.fixture(scope="module")
def cloud(ceph_conf: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with emulator_process(ceph_conf, tmp_path_factory.mktemp("cloud"), vms=12) as emulator:
        yield emulator


async def active_host(bus: Bus, db: CatalogDb, host_id: str) -> str:
    """Announce ``host_id`` with a heartbeat (as its worker does), then activate it."""
    beat = m.HostHeartbeat(host_id=host_id, hostname="bk", version="1", capacity_bytes=1)
    await bus.publish("events", HOST_HEARTBEAT, beat)
    async with asyncio.timeout(T):
        while await db.find_one(Coll.BACKUP_HOSTS, {"_id": host_id}) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    activate = m.HostActivate(actor=ADMIN, host_id=host_id)
    await bus.call(names.HOST_ACTIVATE, activate, m.HostInfo, timeout=T)
    return host_id


async def probing_catalog(
    stack: AsyncExitStack, open_bus: BusOpener, mongo_url: str, *workers: WorkerSettings
) -> tuple[Bus, CatalogDb]:
    """A catalog that asks backup hosts' workers (one per settings, on a bus of theirs)
    to check and browse; a client bus and the catalog's DB (dropped with ``stack``)."""
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    db = await stack.enter_async_context(
        CatalogDb.open(mongo_url, f"test_checks_{uuid.uuid4().hex[:12]}")
    )
    stack.push_async_callback(db.drop)
    catalog_bus: Bus = await stack.enter_async_context(open_bus())
    catalog = Catalog.build(db, box, probe=WorkerProbe(catalog_bus))
    await serve_catalog(catalog_bus, CatalogRpc(catalog, TEST_IDENTITIES))
    if isinstance(catalog_bus, AmqpBus):
        stack.push_async_callback(catalog_bus.delete_topology, [CATALOG_HEARTBEATS])
    worker_bus: Bus = await stack.enter_async_context(open_bus())
    for settings in workers:
        await serve_worker_rpcs(worker_bus, settings)
    return await stack.enter_async_context(open_bus()), db


@pytest.fixture
async def world(
    open_bus: BusOpener, mongo_url: str, ceph_conf: str, cloud: EmulatorProcess
) -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        host = f"bk-{uuid.uuid4().hex[:8]}"
        client, db = await probing_catalog(stack, open_bus, mongo_url, WorkerSettings(host_id=host))
        yield World(client, db, await active_host(client, db, host), cloud, ceph_conf)


async def test_wrong_keys_are_refused_and_nothing_is_stored(world: World) -> None:
    bad_secret = world.register(secret_key="sk-not-the-right-one")
    bad_access = world.register(access_key="AK-unknown-key")
    assert await world.code_of(names.PLATFORM_REGISTER, bad_secret) == "platform_auth_failed"
    assert await world.code_of(names.PLATFORM_REGISTER, bad_access) == "platform_auth_failed"
    assert await world.stored(Coll.PLATFORMS) == []
    assert "platform.registered" not in await world.actions()

    info = await world.call(names.PLATFORM_REGISTER, world.register(), m.PlatformInfo)
    assert info.address == "127.0.0.1" and info.port == world.cloud.port
    [doc] = await world.stored(Coll.PLATFORMS)
    assert doc["_id"] == info.id
    [entry] = [
        e for e in await world.stored(Coll.AUDIT_LOG) if e["action"] == "platform.registered"
    ]
    assert entry["details"]["checked_from"] == world.host


async def test_wrong_address_is_refused_within_seconds(world: World) -> None:
    closed = world.register(port=free_port())
    started = time.monotonic()
    code = await world.code_of(names.PLATFORM_REGISTER, closed)
    elapsed = time.monotonic() - started
    print(f"wrong address refused in {elapsed:.2f}s")
    assert code == "platform_unreachable"
    assert elapsed < 5.0
    assert await world.stored(Coll.PLATFORMS) == []


async def test_a_host_without_a_running_worker_is_reported_unreachable(world: World) -> None:
    silent = await active_host(world.bus, world.db, f"bk-silent-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    code = await world.code_of(names.PLATFORM_REGISTER, world.register(default_host_id=silent))
    assert code == "backup_host_unreachable"
    assert time.monotonic() - started < 5.0
    assert await world.stored(Coll.PLATFORMS) == []


async def test_update_checks_new_keys_and_address_before_storing(world: World) -> None:
    info = await world.call(names.PLATFORM_REGISTER, world.register(), m.PlatformInfo)
    [before] = await world.stored(Coll.PLATFORMS)

    def update(**kw: Any) -> m.PlatformUpdate:
        return m.PlatformUpdate(actor=ADMIN, platform_id=info.id, **kw)

    bad_key = update(secret_key="sk-changed-but-wrong")
    assert await world.code_of(names.PLATFORM_UPDATE, bad_key) == "platform_auth_failed"
    bad_port = update(port=free_port())
    assert await world.code_of(names.PLATFORM_UPDATE, bad_port) == "platform_unreachable"
    assert await world.stored(Coll.PLATFORMS) == [before]

    same_key = update(secret_key=world.cloud.secret_key)
    await world.call(names.PLATFORM_UPDATE, same_key, m.PlatformInfo)
    [after] = await world.stored(Coll.PLATFORMS)
    assert after["secret_key_sealed"] != before["secret_key_sealed"]  # resealed, checked


async def test_storage_is_checked_from_its_backup_host(world: World) -> None:
    info = await world.call(names.PLATFORM_REGISTER, world.register(), m.PlatformInfo)
    refused = {
        "rbd_pool_not_found": world.storage(info.id, pool=f"missing-{uuid.uuid4().hex[:6]}"),
        "ceph_conf_unreadable": world.storage(info.id, conf_path="/nonexistent/ceph.conf"),
        "ceph_connect_failed": world.storage(info.id, client_id="nobody"),
    }
    for code, request in refused.items():
        assert await world.code_of(names.STORAGE_ADD, request) == code
    assert await world.stored(Coll.CEPH_STORAGES) == []
    assert "storage.added" not in await world.actions()

    added = await world.call(names.STORAGE_ADD, world.storage(info.id), m.StorageInfo)
    listed = await world.call(
        names.STORAGE_LIST, m.StorageList(actor=ADMIN, platform_id=info.id), m.StorageListReply
    )
    assert [s.id for s in listed.storages] == [added.id]


async def test_browse_lists_hosts_vms_disks_and_filters_by_keyword(world: World) -> None:
    info = await world.call(names.PLATFORM_REGISTER, world.register(), m.PlatformInfo)
    state = world.cloud.state()

    def browse(**kw: Any) -> m.PlatformBrowse:
        return m.PlatformBrowse(actor=ADMIN, platform_id=info.id, **kw)

    everything = await world.call(names.PLATFORM_BROWSE, browse(), w.PlatformInventory)
    assert [h.id for h in everything.hosts] == [h.id for h in state.hosts]
    listed = {vm.id: (host.id, vm) for host in everything.hosts for vm in host.vms}
    assert len(listed) == len(state.vms) == 12
    for vm in state.vms:
        host_id, seen = listed[vm.id]
        assert host_id == vm.host_id and seen.state == vm.state and seen.on_ceph == vm.on_ceph
        assert [(d.id, d.volume_id, d.size) for d in seen.disks] == [
            (d.id, d.volume_id, d.size) for d in sorted(vm.disks, key=lambda d: d.device_index)
        ]

    # "web" cannot match the hex of an id: only the names web-01 and web-11 match
    found = await world.call(names.PLATFORM_BROWSE, browse(keyword="WEB"), w.PlatformInventory)
    matching = [vm for vm in state.vms if "web" in vm.name]
    assert sorted(vm.name for vm in matching) == ["web-01", "web-11"]
    assert sorted(vm.name for h in found.hosts for vm in h.vms) == ["web-01", "web-11"]
    assert [h.id for h in found.hosts] == [
        h.id for h in state.hosts if h.id in {vm.host_id for vm in matching}
    ]  # hosts without a match are left out
    assert len(found.hosts) < len(state.hosts)

    one = state.hosts[0].id
    only = await world.call(names.PLATFORM_BROWSE, browse(host_id=one), w.PlatformInventory)
    assert [h.id for h in only.hosts] == [one]
    assert {vm.id for vm in only.hosts[0].vms} == {vm.id for vm in state.vms if vm.host_id == one}


async def test_browse_follows_visibility_and_refuses_a_host_unknown_to_the_platform(
    world: World,
) -> None:
    info = await world.call(names.PLATFORM_REGISTER, world.register(), m.PlatformInfo)
    await world.call(names.GROUP_CREATE, m.GroupCreate(actor=ADMIN, name="elsewhere"), m.GroupInfo)
    eve = m.UserCreate(actor=ADMIN, name="eve", role="operator", groups=["elsewhere"])
    await world.call(names.USER_CREATE, eve, m.UserInfo)
    stranger = m.ActorRef(user="eve")
    hidden = m.PlatformBrowse(actor=stranger, platform_id=info.id)
    assert await world.code_of(names.PLATFORM_BROWSE, hidden) == "not_found"
    unknown = m.PlatformBrowse(actor=ADMIN, platform_id=info.id, host_id="no-such-host")
    assert await world.code_of(names.PLATFORM_BROWSE, unknown) == "not_found"
