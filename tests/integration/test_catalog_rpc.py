"""The catalog's RPCs over a bus, with the catalog DB behind them: once over the
in-memory bus and once over RabbitMQ, so both carry the same requests, replies and
error codes. Heartbeat events go in through the bus too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import TypeVar

import msgspec
import pytest
from tests.integration.conftest import TEST_IDENTITIES, BusOpener

from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import HOST_HEARTBEAT, QUEUES
from edgeback_core.errors import EdgebackError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.settings import Secret

pytestmark = pytest.mark.integration

ADMIN = SERVICE = m.ActorRef()
"""The tests' broker user names nobody: it acts as every service (``TEST_IDENTITIES``)."""
T = 10.0
R = TypeVar("R", bound=msgspec.Struct)


class World:
    def __init__(self, client: Bus, db: CatalogDb) -> None:
        self.bus, self.db = client, db

    async def call(self, name: str, req: msgspec.Struct, resp: type[R]) -> R:
        return await self.bus.call(name, req, resp, timeout=T)

    async def code_of(self, name: str, req: msgspec.Struct) -> str:
        with pytest.raises(EdgebackError) as err:
            await self.bus.call(name, req, m.Done, timeout=T)
        return err.value.code


@pytest.fixture
async def world(open_bus: BusOpener, mongo_url: str) -> AsyncIterator[World]:
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            CatalogDb.open(mongo_url, f"test_catalog_{uuid.uuid4().hex[:12]}")
        )
        stack.push_async_callback(db.drop)
        server: Bus = await stack.enter_async_context(open_bus())
        catalog = Catalog.build(
            db, box, offline_after=timedelta(seconds=60), probe=None, events=server
        )
        await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
        client: Bus = await stack.enter_async_context(open_bus())
        yield World(client, db)
        if isinstance(server, AmqpBus):
            await server.delete_topology(list(QUEUES))


async def registered_host(world: World, host_id: str = "h1") -> str:
    beat = m.HostHeartbeat(host_id=host_id, hostname="bk1", version="1", capacity_bytes=5)
    await world.bus.publish("events", HOST_HEARTBEAT, beat)
    async with asyncio.timeout(T):
        # the event's effect is only visible in the database: poll it
        while await world.db.find_one(Coll.BACKUP_HOSTS, {"_id": host_id}) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return host_id


def register(host_id: str, **kw: object) -> m.PlatformRegister:
    fields: dict[str, object] = {
        "actor": ADMIN,
        "name": "edge-1",
        "address": "edge.example.net",
        "access_key": "AKEDGE0000001234",
        "secret_key": "SECRET-never-shown-0000",
        "default_host_id": host_id,
    } | kw
    return msgspec.convert(fields, m.PlatformRegister)


async def test_register_platform_flow(world: World) -> None:
    host = await registered_host(world)
    listed = await world.call(names.HOST_LIST, m.HostList(actor=ADMIN), m.HostListReply)
    assert [(h.id, h.active, h.online) for h in listed.hosts] == [(host, False, True)]
    assert await world.code_of(names.PLATFORM_REGISTER, register(host)) == "host_not_active"
    await world.call(names.HOST_ACTIVATE, m.HostActivate(actor=ADMIN, host_id=host), m.HostInfo)
    info = await world.call(names.PLATFORM_REGISTER, register(host), m.PlatformInfo)
    assert (info.port, info.access_key) == (30188, "AK…1234")
    got = await world.call(
        names.PLATFORM_GET, m.PlatformGet(actor=ADMIN, platform_id=info.id), m.PlatformInfo
    )
    assert got == info and "SECRET" not in repr(got)
    assert await world.code_of(names.PLATFORM_REGISTER, register(host)) == "name_taken"
    keys = await world.call(
        names.PLATFORM_CREDENTIALS,
        m.PlatformCredentialsGet(actor=SERVICE, platform_id=info.id),
        m.PlatformCredentials,
    )
    assert keys.secret_key == "SECRET-never-shown-0000"
    storage = await world.call(
        names.STORAGE_ADD,
        m.StorageAdd(actor=ADMIN, platform_id=info.id, name="ceph", host_id=host, pool="rbd"),
        m.StorageInfo,
    )
    assert storage.instance_template == "{instance_id}_disk"


async def test_malformed_requests_are_refused_with_stable_codes(world: World) -> None:
    host = await registered_host(world)
    await world.call(names.HOST_ACTIVATE, m.HostActivate(actor=ADMIN, host_id=host), m.HostInfo)
    before = await world.db.count(Coll.PLATFORMS, {})

    class WithExtra(m.PlatformGet, frozen=True, kw_only=True):
        surprise: int = 1

    class WrongType(m.Request, frozen=True, kw_only=True):
        actor: m.ActorRef
        platform_id: int

    extra = WithExtra(actor=ADMIN, platform_id="x")
    assert await world.code_of(names.PLATFORM_GET, extra) == "invalid_input"
    wrong = WrongType(actor=ADMIN, platform_id=3)
    assert await world.code_of(names.PLATFORM_GET, wrong) == "invalid_input"
    bad_template = m.StorageAdd(
        actor=ADMIN, platform_id="nope", name="s", host_id=host, pool="rbd", volume_template="v"
    )
    assert await world.code_of(names.STORAGE_ADD, bad_template) == "invalid_template"
    dangling = m.StorageAdd(actor=ADMIN, platform_id="nope", name="s", host_id=host, pool="rbd")
    assert await world.code_of(names.STORAGE_ADD, dangling) == "unknown_reference"
    operator = m.ActorRef(user="op")  # no such user
    denied = register(host, actor=operator)
    assert await world.code_of(names.PLATFORM_REGISTER, denied) == "permission_denied"
    assert await world.db.count(Coll.PLATFORMS, {}) == before
    assert await world.db.count(Coll.CEPH_STORAGES, {}) == 0


async def test_run_transitions_over_the_bus(world: World) -> None:
    run = await world.call(
        names.RUN_CREATE, m.RunCreate(actor=SERVICE, job_id="j", host_id="h"), m.RunInfo
    )

    def move(target: m.RunStateName, rid: str) -> m.RunTransition:
        return m.RunTransition(actor=SERVICE, run_id=run.id, target=target, request_id=rid)

    replies = await asyncio.gather(
        *(
            world.bus.call(
                names.RUN_TRANSITION, move("queued", f"q{i}"), m.RunTransitionReply, timeout=T
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )
    applied = [r for r in replies if isinstance(r, m.RunTransitionReply) and r.applied]
    refused = [r for r in replies if isinstance(r, EdgebackError)]
    assert len(applied) == 1 and len(refused) == 9
    assert {e.code for e in refused} == {"invalid_transition"}
    final = await world.call(names.RUN_GET, m.RunGet(actor=SERVICE, run_id=run.id), m.RunInfo)
    assert [s.to_state for s in final.history] == ["pending", "queued"]
