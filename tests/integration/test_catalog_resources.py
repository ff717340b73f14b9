"""Catalog resources against the catalog DB over the wire: hosts, platforms, storages,
users and groups, secrets at rest, visibility, audit, and refusals that change nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeback_catalog.domain import Actor, PlatformId, Role
from edgeback_catalog.hosts import Heartbeat
from edgeback_catalog.mongo import INDEXES, SCHEMA_VERSION, CatalogDb, Coll
from edgeback_catalog.platforms import PlatformChanges, PlatformDraft
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_catalog.storages import StorageDraft
from edgeback_core.errors import (
    EdgebackError,
    HostNotActiveError,
    InvalidInputError,
    InvalidTemplateError,
    NameTakenError,
    NotFoundError,
    PermissionDeniedError,
    PlatformInUseError,
    UnknownReferenceError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.settings import Secret

pytestmark = pytest.mark.integration

ADMIN = Actor(name="root", role=Role.ADMIN)
ACCESS_KEY = "AKEDGE00000000001234"
SECRET_KEY = "sk-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[CatalogDb]:
    async with CatalogDb.open(mongo_url, f"test_catalog_{uuid.uuid4().hex[:12]}") as opened:
        try:
            yield opened
        finally:
            await opened.drop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def catalog(db: CatalogDb, clock: FakeClock) -> Catalog:
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    return Catalog.build(db, box, clock=clock, offline_after=timedelta(seconds=60), probe=None)


async def active_host(catalog: Catalog, host_id: str = "host-1") -> BackupHostId:
    hid = BackupHostId(host_id)
    beat = Heartbeat(host_id=hid, hostname=f"{host_id}.local", version="0.1", capacity_bytes=10)
    await catalog.hosts.heartbeat(beat)
    await catalog.hosts.activate(ADMIN, hid)
    return hid


def draft(host: BackupHostId, name: str = "edge-1", **kw: Any) -> PlatformDraft:
    base = PlatformDraft(
        name=name,
        address="10.20.30.40",
        port=30188,
        ssl=True,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        default_host_id=host,
    )
    return replace(base, **kw)


async def snapshot(db: CatalogDb) -> dict[str, list[dict[str, object]]]:
    """Every document of every collection: to show a refused request changed nothing."""
    return {c: await db.find(c, {}) for c in Coll if c is not Coll.AUDIT_LOG}


async def test_migration_creates_indexes_and_is_idempotent(db: CatalogDb) -> None:
    assert await db.schema_version() == SCHEMA_VERSION
    assert await db.migrate() == SCHEMA_VERSION
    for spec in INDEXES:
        assert spec.name in await db.index_names(spec.coll)


async def test_heartbeat_registers_then_admin_activates_and_online_follows_clock(
    catalog: Catalog, clock: FakeClock
) -> None:
    beat = Heartbeat(host_id=BackupHostId("h1"), hostname="bk1", version="1.0", capacity_bytes=100)
    host = await catalog.hosts.heartbeat(beat)
    assert not host.active
    assert (await catalog.hosts.get(ADMIN, BackupHostId("h1"))).online
    with pytest.raises(HostNotActiveError):
        await catalog.hosts.require_active(BackupHostId("h1"))
    operator = Actor(name="op", role=Role.OPERATOR)
    with pytest.raises(PermissionDeniedError):
        await catalog.hosts.activate(operator, BackupHostId("h1"))
    assert (await catalog.hosts.activate(ADMIN, BackupHostId("h1"))).active
    clock.advance(61)
    assert not (await catalog.hosts.get(ADMIN, BackupHostId("h1"))).online
    await catalog.hosts.heartbeat(replace(beat, version="1.1"))
    view = await catalog.hosts.get(ADMIN, BackupHostId("h1"))
    assert view.online and view.host.active and view.host.version == "1.1"
    assert view.host.registered_at < view.host.last_seen


async def test_platform_crud_and_unique_names(catalog: Catalog, db: CatalogDb) -> None:
    host = await active_host(catalog)
    p = await catalog.platforms.register(ADMIN, draft(host))
    assert (p.port, p.ssl, p.access_key_masked) == (30188, True, "AK…1234")
    with pytest.raises(NameTakenError) as err:
        await catalog.platforms.register(ADMIN, draft(host))
    assert err.value.code == "name_taken"
    other = await catalog.platforms.register(ADMIN, draft(host, name="edge-2"))
    with pytest.raises(NameTakenError):
        await catalog.platforms.rename(ADMIN, other.id, "edge-1")
    renamed = await catalog.platforms.rename(ADMIN, p.id, "edge-main")
    assert renamed.name == "edge-main"
    changed = await catalog.platforms.update(ADMIN, p.id, PlatformChanges(port=443, ssl=False))
    assert (changed.port, changed.ssl, changed.name) == (443, False, "edge-main")
    tagged = await catalog.platforms.set_tags(ADMIN, p.id, ["site:a", "prod", "prod"])
    assert tagged.tags == ("prod", "site:a")
    assert [x.name for x in await catalog.platforms.list(ADMIN, tag="prod")] == ["edge-main"]
    assert [x.name for x in await catalog.platforms.list(ADMIN)] == ["edge-2", "edge-main"]
    await catalog.platforms.unregister(ADMIN, other.id)
    with pytest.raises(NotFoundError):
        await catalog.platforms.get(ADMIN, other.id)
    actions = [e["action"] for e in await catalog.audit.entries()]
    for action in ("platform.registered", "platform.renamed", "platform.updated"):
        assert action in actions
    assert actions[0] == "platform.unregistered"


async def test_secrets_are_sealed_at_rest_and_masked_in_reads(
    catalog: Catalog, db: CatalogDb
) -> None:
    host = await active_host(catalog)
    p = await catalog.platforms.register(ADMIN, draft(host))
    raw = await db.find_one(Coll.PLATFORMS, {"_id": p.id})
    assert raw is not None
    text = repr(raw)
    assert ACCESS_KEY not in text and SECRET_KEY not in text
    assert raw["secret_key_sealed"].startswith("v1:")
    assert SECRET_KEY not in repr(await catalog.platforms.get(ADMIN, p.id))
    with pytest.raises(PermissionDeniedError):
        await catalog.platforms.credentials(ADMIN, p.id)
    service = Actor(name="worker", role=Role.SERVICE)
    keys = await catalog.platforms.credentials(service, p.id)
    assert (keys.access_key, keys.secret_key) == (ACCESS_KEY, SECRET_KEY)
    await catalog.platforms.update(ADMIN, p.id, PlatformChanges(secret_key="new-secret-key"))
    assert (await catalog.platforms.credentials(service, p.id)).secret_key == "new-secret-key"


async def test_unregister_is_refused_while_a_job_uses_the_platform(
    catalog: Catalog, db: CatalogDb
) -> None:
    host = await active_host(catalog)
    p = await catalog.platforms.register(ADMIN, draft(host))
    await db.insert(Coll.JOBS, {"_id": "j1", "name": "nightly", "platform_ids": [p.id]})
    with pytest.raises(PlatformInUseError) as err:
        await catalog.platforms.unregister(ADMIN, p.id)
    assert err.value.code == "platform_in_use" and "nightly" in err.value.message
    assert (await catalog.platforms.get(ADMIN, p.id)).id == p.id
    await db.delete(Coll.JOBS, {"_id": "j1"})
    await catalog.platforms.unregister(ADMIN, p.id)


async def test_ceph_storage_defaults_templates_and_references(catalog: Catalog) -> None:
    host = await active_host(catalog)
    p = await catalog.platforms.register(ADMIN, draft(host))
    s = await catalog.storages.add(
        ADMIN, StorageDraft(platform_id=p.id, name="ceph-a", host_id=host, pool="rbd")
    )
    assert (s.client_id, s.conf_path, s.rbd_client) == ("admin", "/etc/ceph/ceph.conf", "librbd")
    k = await catalog.storages.add(
        ADMIN,
        StorageDraft(platform_id=p.id, name="ceph-k", host_id=host, pool="rbd", rbd_client="krbd"),
    )
    assert [x.rbd_client for x in await catalog.storages.list(ADMIN, p.id) if x.id == k.id] == [
        "krbd"
    ]
    assert s.templates.instance_image("i-1") == "i-1_disk"
    with pytest.raises(NameTakenError):
        await catalog.storages.add(
            ADMIN, StorageDraft(platform_id=p.id, name="ceph-a", host_id=host, pool="rbd")
        )
    assert [x.name for x in await catalog.storages.list(ADMIN, p.id)] == ["ceph-a", "ceph-k"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"platform_id": PlatformId("nope")}, UnknownReferenceError),
        ({"host_id": BackupHostId("ghost")}, UnknownReferenceError),
        ({"host_id": BackupHostId("idle")}, HostNotActiveError),
        ({"volume_template": "vol"}, InvalidTemplateError),
        ({"snapshot_template": "{snapshot_id}-{volume_id}"}, InvalidTemplateError),
        ({"instance_template": "{instance_id}/disk"}, InvalidTemplateError),
        ({"pool": "bad pool"}, InvalidInputError),
        ({"conf_path": "relative/ceph.conf"}, InvalidInputError),
        ({"rbd_client": "nbd"}, InvalidInputError),
    ],
)
async def test_bad_storage_is_refused_with_a_code_and_changes_nothing(
    catalog: Catalog, db: CatalogDb, change: dict[str, object], error: type[EdgebackError]
) -> None:
    host = await active_host(catalog)
    await catalog.hosts.heartbeat(
        Heartbeat(host_id=BackupHostId("idle"), hostname="idle", version="", capacity_bytes=0)
    )
    p = await catalog.platforms.register(ADMIN, draft(host))
    before = await snapshot(db)
    good = StorageDraft(platform_id=p.id, name="s", host_id=host, pool="rbd")
    with pytest.raises(error) as err:
        await catalog.storages.add(ADMIN, replace(good, **change))  # type: ignore[arg-type]
    assert err.value.code == error.code
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"name": " padded "}, "invalid_input"),
        ({"address": "not an address"}, "invalid_input"),
        ({"port": 70000}, "invalid_input"),
        ({"access_key": "k"}, "invalid_input"),
        ({"default_host_id": BackupHostId("ghost")}, "unknown_reference"),
        ({"groups": ("no-such-group",)}, "unknown_reference"),
        ({"tags": ("bad tag",)}, "invalid_input"),
    ],
)
async def test_bad_platform_is_refused_with_a_code_and_changes_nothing(
    catalog: Catalog, db: CatalogDb, change: dict[str, Any], code: str
) -> None:
    host = await active_host(catalog)
    before = await snapshot(db)
    with pytest.raises(EdgebackError) as err:
        await catalog.platforms.register(ADMIN, draft(host, **change))
    assert err.value.code == code
    assert await snapshot(db) == before


async def test_operators_see_only_resources_of_their_groups(catalog: Catalog) -> None:
    host = await active_host(catalog)
    for name in ("team-a", "team-b"):
        await catalog.users.create_group(ADMIN, name)
    user = await catalog.users.create_user(ADMIN, "alice", "operator", ["team-a"])
    alice = await catalog.users.actor_of(user.name)
    a = await catalog.platforms.register(ADMIN, draft(host, name="pa", groups=("team-a",)))
    b = await catalog.platforms.register(ADMIN, draft(host, name="pb", groups=("team-b",)))
    assert [p.name for p in await catalog.platforms.list(alice)] == ["pa"]
    assert (await catalog.platforms.get(alice, a.id)).name == "pa"
    with pytest.raises(NotFoundError):
        await catalog.platforms.get(alice, b.id)
    with pytest.raises(NotFoundError):
        await catalog.storages.list(alice, b.id)
    with pytest.raises(PermissionDeniedError):
        await catalog.platforms.register(alice, draft(host, name="pc"))
    assert await catalog.hosts.list(alice) == []
    await catalog.hosts.authorize(ADMIN, host, ["team-a"])
    assert [v.host.id for v in await catalog.hosts.list(alice)] == [host]
    with pytest.raises(NameTakenError):
        await catalog.users.create_user(ADMIN, "alice", "admin", [])
    with pytest.raises(InvalidInputError):
        await catalog.users.create_user(ADMIN, "bob", "superuser", [])


async def test_bulk_activate_and_authorize_are_all_or_nothing(
    catalog: Catalog, db: CatalogDb
) -> None:
    ids = [BackupHostId(f"bulk-{i}") for i in range(3)]
    for hid in ids:
        beat = Heartbeat(host_id=hid, hostname=f"{hid}.local", version="0.1", capacity_bytes=1)
        await catalog.hosts.heartbeat(beat)
    await catalog.users.create_group(ADMIN, "ops")
    before = await snapshot(db)
    with pytest.raises(NotFoundError) as unknown:
        await catalog.hosts.activate_many(ADMIN, [*ids, BackupHostId("nope")])
    assert unknown.value.details["host_ids"] == ["nope"]
    with pytest.raises(UnknownReferenceError):
        await catalog.hosts.authorize_many(ADMIN, ids, ["ops", "ghosts"])
    assert await snapshot(db) == before

    activated = await catalog.hosts.activate_many(ADMIN, ids)
    assert [h.id for h in activated] == ids
    assert all(h.active for h in activated)
    authorized = await catalog.hosts.authorize_many(ADMIN, ids, ["ops"])
    assert all(h.groups == {"ops"} for h in authorized)
