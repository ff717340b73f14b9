"""The catalog authorizes by the broker user RabbitMQ validated, never by the request:
backup hosts' own broker users (made for the test), the API's and the tests' users, the
real catalog DB; once over RabbitMQ (amqps) and once over the in-memory bus."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from tests.integration.conftest import TEST_IDENTITIES, TEST_USER, BusOpener

from edgeback_catalog.gate import DENIED
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import CATALOG_HEARTBEATS, HOST_HEARTBEAT, RUN_FINISHED, RUN_STARTED
from edgeback_core.errors import PermissionDeniedError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import runs as r
from edgeback_core.settings import Secret

pytestmark = pytest.mark.integration

T = 10.0
SELF = m.ActorRef()


class World:
    def __init__(self, open_bus: BusOpener, stack: AsyncExitStack, db: CatalogDb) -> None:
        self.open_bus, self.stack, self.db = open_bus, stack, db
        self.host = f"h{uuid.uuid4().hex[:8]}"

    async def client(self, user: str) -> Bus:
        bus: Bus = await self.stack.enter_async_context(self.open_bus(user))
        return bus

    async def denied(self, bus: Bus, rpc: str, req: msgspec.Struct) -> None:
        with pytest.raises(PermissionDeniedError):
            await bus.call(rpc, req, m.Done, timeout=T)

    async def refusals(self, broker_user: str) -> list[dict[str, Any]]:
        return await self.db.find(Coll.AUDIT_LOG, {"action": DENIED, "actor": broker_user})


@pytest.fixture
async def world(open_bus: BusOpener, mongo_url: str) -> AsyncIterator[World]:
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            CatalogDb.open(mongo_url, f"test_authz_{uuid.uuid4().hex[:12]}")
        )
        stack.push_async_callback(db.drop)
        server: Bus = await stack.enter_async_context(open_bus(TEST_USER))
        catalog = Catalog.build(db, box, offline_after=timedelta(seconds=60), probe=None)
        await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
        yield World(open_bus, stack, db)
        if isinstance(server, AmqpBus):
            await server.delete_topology([CATALOG_HEARTBEATS])


async def _beat(bus: Bus, host_id: str) -> None:
    beat = m.HostHeartbeat(host_id=host_id, hostname="bk", version="1", capacity_bytes=1)
    await bus.publish("events", HOST_HEARTBEAT, beat)


async def _until(check: Any) -> None:
    async with asyncio.timeout(T):
        while not await check():  # noqa: ASYNC110 - an event's effect shows only in the DB
            await asyncio.sleep(0.02)


async def test_a_host_claiming_admin_or_service_is_refused_and_audited(world: World) -> None:
    host_user = f"host-{world.host}"
    host = await world.client(host_user)
    claims = [m.ActorRef(role="admin"), m.ActorRef(role="service"), m.ActorRef(user="root")]
    for claim in claims:
        await world.denied(host, names.AUDIT_LIST, m.AuditList(actor=claim))
        await world.denied(host, names.HOST_LIST, m.HostList(actor=claim))
    await world.denied(host, names.PLATFORM_CREDENTIALS, m.PlatformCredentialsGet(platform_id="p"))
    entries = await world.refusals(host_user)
    assert len(entries) == 2 * len(claims) + 1
    assert {e["role"] for e in entries} == {"host"}
    claimed = [
        (e["details"].get("claimed_role"), e["details"].get("claimed_user")) for e in entries
    ]
    assert {("admin", None), ("service", None), (None, "root")} <= set(claimed)
    assert {e["resource"] for e in entries} >= {f"rpc/{names.AUDIT_LIST}", f"rpc/{names.HOST_LIST}"}


async def test_a_heartbeat_for_another_host_id_is_refused_and_audited(world: World) -> None:
    host_user, other = f"host-{world.host}", f"h{uuid.uuid4().hex[:8]}"
    host = await world.client(host_user)
    await _beat(host, other)
    await _beat(host, world.host)

    async def own_registered() -> bool:
        return await world.db.find_one(Coll.BACKUP_HOSTS, {"_id": world.host}) is not None

    async def refusal_audited() -> bool:
        return bool(await world.refusals(host_user))

    await _until(own_registered)
    await _until(refusal_audited)
    assert await world.db.find_one(Coll.BACKUP_HOSTS, {"_id": other}) is None
    (entry,) = await world.refusals(host_user)
    assert entry["resource"] == "event/host.heartbeat"
    assert entry["details"]["claimed_host"] == other


async def test_the_api_naming_an_operator_gets_exactly_the_operators_rights(world: World) -> None:
    tests = await world.client(TEST_USER)
    await tests.call(names.GROUP_CREATE, m.GroupCreate(name="ops"), m.GroupInfo, timeout=T)
    for name, role, groups in (("root", "admin", []), ("op", "operator", ["ops"])):
        user = m.UserCreate(name=name, role=role, groups=groups)  # type: ignore[arg-type]
        await tests.call(names.USER_CREATE, user, m.UserInfo, timeout=T)
    api = await world.client("api")
    op, root = m.ActorRef(user="op"), m.ActorRef(user="root")
    await world.denied(api, names.AUDIT_LIST, m.AuditList(actor=op))
    await world.denied(api, names.GROUP_CREATE, m.GroupCreate(actor=op, name="mine"))
    me = await api.call(names.USER_GET, m.UserGet(actor=op, name="op"), m.UserInfo, timeout=T)
    assert (me.role, me.groups) == ("operator", ["ops"])
    log = await api.call(names.AUDIT_LIST, m.AuditList(actor=root), m.AuditListReply, timeout=T)
    refused = [(e.actor, e.role, e.resource) for e in log.entries if e.action == DENIED]
    assert refused == [
        ("op", "operator", f"rpc/{names.GROUP_CREATE}"),
        ("op", "operator", f"rpc/{names.AUDIT_LIST}"),
    ]
    await world.denied(api, names.AUDIT_LIST, m.AuditList(actor=m.ActorRef(user="nobody")))
    await world.denied(api, names.AUDIT_LIST, m.AuditList())  # the API itself is nobody


async def test_a_host_reads_only_the_credentials_of_its_own_platforms(world: World) -> None:
    tests = await world.client(TEST_USER)
    await _beat(tests, world.host)

    async def registered() -> bool:
        return await world.db.find_one(Coll.BACKUP_HOSTS, {"_id": world.host}) is not None

    await _until(registered)
    activate = m.HostActivate(host_id=world.host)
    await tests.call(names.HOST_ACTIVATE, activate, m.HostInfo, timeout=T)
    register = m.PlatformRegister(
        name="edge", address="edge.example.net", access_key="AK000001", secret_key="SK-1",
        default_host_id=world.host,
    )  # fmt: skip
    info = await tests.call(names.PLATFORM_REGISTER, register, m.PlatformInfo, timeout=T)
    mine = await world.client(f"host-{world.host}")
    ask = m.PlatformCredentialsGet(platform_id=info.id)
    keys = await mine.call(names.PLATFORM_CREDENTIALS, ask, m.PlatformCredentials, timeout=T)
    assert keys.secret_key == "SK-1"
    stranger_user = f"host-h{uuid.uuid4().hex[:8]}"
    stranger = await world.client(stranger_user)
    await world.denied(stranger, names.PLATFORM_CREDENTIALS, ask)
    (entry,) = await world.refusals(stranger_user)
    assert entry["details"]["reason"] == "not this host's platform"


async def test_a_host_reports_only_on_its_own_runs_and_never_ends_one(world: World) -> None:
    """Run events are kept from the run's own host; one about another host's run, or a
    ``RunFinished`` (the catalog's alone), is refused, audited and not kept."""
    host_user = f"host-{world.host}"
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    for run_id, host_id in ((mine, world.host), (theirs, f"h{uuid.uuid4().hex[:8]}")):
        await world.db.insert(Coll.RUNS, {"_id": run_id, "host_id": host_id, "job_id": "j"})
    host = await world.client(host_user)
    at = datetime.now(UTC)

    def started(run_id: str) -> r.RunStarted:
        return r.RunStarted(
            run_id=run_id, job_id="j", host_id=world.host, backup_type="full", vm_count=1,
            requested_by="test", at=at,
        )  # fmt: skip

    await host.publish("events", RUN_STARTED, started(theirs), message_id="forged-start")
    ended = r.RunFinished(run_id=mine, job_id="j", outcome="succeeded", at=at)
    await host.publish("events", RUN_FINISHED, ended, message_id="forged-end")
    await host.publish("events", RUN_STARTED, started(mine), message_id="own-start")

    async def own_kept() -> bool:
        return await world.db.find_one(Coll.RUN_LOG, {"_id": "own-start"}) is not None

    async def both_refused() -> bool:
        return len(await world.refusals(host_user)) == 2

    await _until(own_kept)
    await _until(both_refused)
    kept = await world.db.find(Coll.RUN_LOG, {})
    assert [entry["_id"] for entry in kept] == ["own-start"]
    reasons = {e["resource"]: e["details"]["reason"] for e in await world.refusals(host_user)}
    assert reasons == {
        "event/RunStarted": "not this host's run",
        "event/RunFinished": "not a sender of this event",
    }
