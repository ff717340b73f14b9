"""Restores through the catalog's RPCs over both buses, with the catalog DB behind:
create returns a verification code; a wrong code is refused, changes nothing and is
audited; the right one queues the restore and sends ``PlanRestore`` to the backup
host's run queue; the code is single-use and expires (the catalog's clock is the
test's). Restore points are browsed by VM, pool and time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from tests.integration.conftest import TEST_IDENTITIES, BusOpener
from tests.integration.test_catalog_rpc import ADMIN, World, register, registered_host

from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Bus, Envelope
from edgeback_core.bus.topology import CATALOG_HEARTBEATS, worker_runs
from edgeback_core.errors import InvalidRestoreError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages import restores as r
from edgeback_core.messages.jobs import PoolRef
from edgeback_core.settings import Secret

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POOL = PoolRef(node_url="http://node:8710", name="dd")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class RestoreWorld(World):
    clock: Clock


@pytest.fixture
async def world(open_bus: BusOpener, mongo_url: str) -> AsyncIterator[RestoreWorld]:
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    clock = Clock()
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            CatalogDb.open(mongo_url, f"test_restores_{uuid.uuid4().hex[:12]}")
        )
        stack.push_async_callback(db.drop)
        server: Bus = await stack.enter_async_context(open_bus())
        catalog = Catalog.build(db, box, clock=clock, probe=None)
        await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
        client: Bus = await stack.enter_async_context(open_bus())
        world = RestoreWorld(client, db)
        world.clock = clock
        yield world
        if isinstance(server, AmqpBus):
            await server.delete_topology([CATALOG_HEARTBEATS, worker_runs(BackupHostId("h1"))])


def disk(vm: str, name: str, version: str, size: int, minute: int) -> r.ImportedDisk:
    created = T0 - timedelta(days=1) + timedelta(minutes=minute)
    return r.ImportedDisk(
        vm_id=vm, disk_id=name, version=version, image=f"rbd/{vm}-{name}@{version}",
        image_size=size, backup_type="full", created_ms=int(created.timestamp() * 1000),
        chunks=1, zero_chunks=0,
    )  # fmt: skip


async def setup(world: RestoreWorld) -> dict[str, str]:
    """An active backup host and restore points (imported: complete backup sets); vm-a's
    name the platform of their VM, as a run's do, vm-b's stays as imported (none)."""
    host = await registered_host(world)
    await world.call(
        catalog_rpc.HOST_ACTIVATE, m.HostActivate(actor=ADMIN, host_id=host), m.HostInfo
    )
    disks = [
        disk("vm-a", "d0", "v1", 1 << 30, 0),
        disk("vm-a", "d1", "v1", 2 << 30, 0),
        disk("vm-a", "d0", "v2", 1 << 30, 60),
        disk("vm-a", "d1", "v2", 2 << 30, 60),
        disk("vm-b", "d0", "v1", 1 << 30, 30),
    ]
    done = await world.call(
        r.BACKUP_SET_IMPORT,
        r.BackupSetImport(actor=ADMIN, pool=POOL, disks=disks),
        r.BackupSetImportReply,
    )
    assert (done.backup_sets_added, done.disk_versions_added) == (3, 5)
    query = r.RestorePointsQuery(actor=ADMIN, vm_id="vm-a")
    points = (await world.call(r.RESTORE_POINTS, query, r.RestorePointsReply)).points
    for point in points:  # vm-a's as a run records them: with the platform of the VM
        change = {"$set": {"vm.platform_id": "p1"}}
        await world.db.update(Coll.BACKUP_SETS, {"_id": point.backup_set_id}, change)
    assert [len(p.disks) for p in points] == [2, 2]
    assert points[0].taken_at > points[1].taken_at  # newest first
    return {"host": host, "a_new": points[0].backup_set_id, "a_old": points[1].backup_set_id}


def spec(set_ids: list[str], **kw: object) -> r.RestoreSpec:
    return r.RestoreSpec(backup_set_ids=set_ids, options=r.RestoreOptions(host_id="h1"), **kw)  # type: ignore[arg-type]


async def refused_tries(world: World, restore_id: str) -> list[str]:
    docs = await world.db.find(
        Coll.AUDIT_LOG, {"resource": f"restore/{restore_id}", "action": "restore.code_refused"}
    )
    return [doc["details"]["verdict"] for doc in docs]


async def test_verification_code_gates_the_start(world: RestoreWorld) -> None:
    ids = await setup(world)
    commands: asyncio.Queue[r.PlanRestore | r.RestoreVmTask] = asyncio.Queue()

    async def take(msg: r.PlanRestore | r.RestoreVmTask, _env: Envelope) -> None:
        await commands.put(msg)

    await world.bus.consume(worker_runs(BackupHostId("h1")), take, r.RestoreCommand)  # type: ignore[arg-type]
    created = await world.call(
        r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=spec([ids["a_new"]])), r.RestoreCreated
    )
    rid, code = created.restore.id, created.verification_code
    assert created.restore.state == "pending_verification"
    assert created.restore.code_expires_at == T0 + timedelta(minutes=10)
    stored = await world.db.find_one(Coll.RESTORES, {"_id": rid})
    assert stored is not None and code not in repr(stored)  # only its hash is kept

    wrong = r.RestoreStart(actor=ADMIN, restore_id=rid, verification_code="AAAAAAAA")
    assert await world.code_of(r.RESTORE_START, wrong) == "verification_code_wrong"
    after = await world.db.find_one(Coll.RESTORES, {"_id": rid})
    assert after == stored  # a wrong code changes nothing ...
    assert await refused_tries(world, rid) == ["wrong"]  # ... but is audited

    right = r.RestoreStart(actor=ADMIN, restore_id=rid, verification_code=code.lower())
    started = await world.call(r.RESTORE_START, right, r.RestoreInfo)
    assert (started.state, started.code_expires_at) == ("queued", None)
    async with asyncio.timeout(10):
        sent = await commands.get()
    assert sent == r.PlanRestore(restore_id=rid, host_id="h1")

    assert await world.code_of(r.RESTORE_START, right) == "verification_code_used"
    assert await refused_tries(world, rid) == ["wrong", "used"]
    listed = await world.call(r.RESTORE_LIST, r.RestoreList(actor=ADMIN), r.RestoreListReply)
    assert [x.id for x in listed.restores] == [rid]
    cancel = r.RestoreCancel(actor=ADMIN, restore_id=rid)
    assert (await world.call(r.RESTORE_CANCEL, cancel, r.RestoreInfo)).state == "cancelled"
    assert commands.empty()


async def test_an_expired_code_is_refused_and_ends_the_restore(world: RestoreWorld) -> None:
    ids = await setup(world)
    manual = spec([ids["a_old"]], schedule={"kind": "manual"})
    created = await world.call(
        r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=manual), r.RestoreCreated
    )
    rid = created.restore.id
    world.clock.now = T0 + timedelta(minutes=10)
    start = r.RestoreStart(actor=ADMIN, restore_id=rid, verification_code=created.verification_code)
    assert await world.code_of(r.RESTORE_START, start) == "verification_code_expired"
    got = await world.call(r.RESTORE_GET, r.RestoreGet(actor=ADMIN, restore_id=rid), r.RestoreInfo)
    assert got.state == "expired"
    assert await refused_tries(world, rid) == ["expired"]
    # a fresh request in time: a manual one is held (scheduled), nothing is published
    again = await world.call(
        r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=manual), r.RestoreCreated
    )
    start = r.RestoreStart(
        actor=ADMIN, restore_id=again.restore.id, verification_code=again.verification_code
    )
    assert (await world.call(r.RESTORE_START, start, r.RestoreInfo)).state == "scheduled"


async def test_invalid_restores_are_refused_with_codes(world: RestoreWorld) -> None:
    ids = await setup(world)
    maps = [
        r.DiskMap(source_disk_id="d0", target_disk_id="t0"),
        r.DiskMap(source_disk_id="d1", target_disk_id="t0"),
    ]
    target = r.RestoreTarget(new_path=r.NewPath(platform_id="p1", vm_id="vm-9", disks=maps))
    bad = r.RestoreCreate(actor=ADMIN, spec=spec([ids["a_new"]], target=target))
    assert await world.code_of(r.RESTORE_CREATE, bad) == "invalid_restore"
    both = r.RestoreCreate(actor=ADMIN, spec=spec([ids["a_new"], ids["a_old"]]))
    assert await world.code_of(r.RESTORE_CREATE, both) == "invalid_restore"
    nothing = r.RestoreCreate(actor=ADMIN, spec=spec(["no-such-set"]))
    assert await world.code_of(r.RESTORE_CREATE, nothing) == "invalid_restore"
    mapped = [r.DiskMap(source_disk_id=d, target_disk_id=f"t-{d}") for d in ("d0", "d1")]
    elsewhere = r.NewPath(platform_id="no-such-platform", vm_id="vm-9", disks=mapped)
    into = spec([ids["a_new"]], target=r.RestoreTarget(new_path=elsewhere))
    unknown = r.RestoreCreate(actor=ADMIN, spec=into)
    assert await world.code_of(r.RESTORE_CREATE, unknown) == "unknown_reference"
    assert await world.db.count(Coll.RESTORES, {}) == 0
    window = r.RestorePointsQuery(
        actor=ADMIN, pool=POOL, taken_after=T0 - timedelta(days=1, minutes=-1)
    )
    points = (await world.call(r.RESTORE_POINTS, window, r.RestorePointsReply)).points
    assert sorted(p.vm.vm_id for p in points) == ["vm-a", "vm-b"]


async def test_an_imported_point_is_restored_to_a_new_path_only(world: RestoreWorld) -> None:
    ids = await setup(world)
    query = r.RestorePointsQuery(actor=ADMIN, vm_id="vm-b")
    (imported,) = (await world.call(r.RESTORE_POINTS, query, r.RestorePointsReply)).points
    assert imported.vm.platform_id == ""  # the pool does not know where the VM ran
    original = r.RestoreCreate(actor=ADMIN, spec=spec([imported.backup_set_id]))
    with pytest.raises(InvalidRestoreError) as err:
        await world.bus.call(r.RESTORE_CREATE, original, r.RestoreCreated, timeout=10)
    assert err.value.details["codes"] == [r.POINT_NO_ORIGINAL_VM]
    assert await world.db.count(Coll.RESTORES, {}) == 0
    # with a point that names its platform too: refused alike, nothing kept
    both = spec([imported.backup_set_id, ids["a_new"]])
    assert await world.code_of(r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=both)) == (
        "invalid_restore"
    )
    assert await world.db.count(Coll.RESTORES, {}) == 0

    platform = await world.call(
        catalog_rpc.PLATFORM_REGISTER, register(ids["host"]), m.PlatformInfo
    )
    onto = [r.DiskMap(source_disk_id="d0", target_disk_id="d0")]
    home = r.NewPath(platform_id=platform.id, vm_id="vm-b", disks=onto)
    new = spec([imported.backup_set_id], target=r.RestoreTarget(new_path=home))
    created = await world.call(
        r.RESTORE_CREATE, r.RestoreCreate(actor=ADMIN, spec=new), r.RestoreCreated
    )
    assert created.restore.state == "pending_verification"
    assert await world.db.count(Coll.RESTORES, {}) == 1


async def test_points_are_searched_paged_and_scoped(world: RestoreWorld) -> None:
    ids = await setup(world)
    search = r.RestorePointsQuery(actor=ADMIN, vm="VM-A", limit=1)
    first = await world.call(r.RESTORE_POINTS, search, r.RestorePointsReply)
    assert [p.backup_set_id for p in first.points] == [ids["a_new"]]
    assert first.next_after is not None
    rest = msgspec.structs.replace(search, after=first.next_after)
    second = await world.call(r.RESTORE_POINTS, rest, r.RestorePointsReply)
    assert ([p.backup_set_id for p in second.points], second.next_after) == ([ids["a_old"]], None)
    bad = msgspec.structs.replace(search, after="not-a-cursor")
    assert await world.code_of(r.RESTORE_POINTS, bad) == "invalid_input"
    # an operator sees the points of the jobs it sees: imported sets belong to none
    await world.call(catalog_rpc.GROUP_CREATE, m.GroupCreate(name="g1"), m.GroupInfo)
    made = m.UserCreate(name="op", role="operator", groups=["g1"])
    await world.call(catalog_rpc.USER_CREATE, made, m.UserInfo)
    op = m.ActorRef(user="op")
    seen = await world.call(r.RESTORE_POINTS, r.RestorePointsQuery(actor=op), r.RestorePointsReply)
    assert seen.points == []
    hidden = r.RestoreCreate(actor=op, spec=spec([ids["a_new"]]))
    assert await world.code_of(r.RESTORE_CREATE, hidden) == "invalid_restore"
    assert await world.db.count(Coll.RESTORES, {}) == 0


async def test_restores_are_listed_in_pages(world: RestoreWorld) -> None:
    ids = await setup(world)
    made = []
    for minute in range(3):
        world.clock.now = T0 + timedelta(minutes=minute)
        create = r.RestoreCreate(actor=ADMIN, spec=spec([ids["a_new"]]))
        made.append((await world.call(r.RESTORE_CREATE, create, r.RestoreCreated)).restore.id)
    pages, after = [], None
    while True:
        ask = r.RestoreList(actor=ADMIN, limit=2, after=after)
        got = await world.call(r.RESTORE_LIST, ask, r.RestoreListReply)
        pages.append([x.id for x in got.restores])
        if (after := got.next_after) is None:
            break
    assert pages == [made[::-1][:2], made[::-1][2:]]
