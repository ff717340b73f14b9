"""X4: ``edgeback catalog import`` rebuilds backup sets from a pool into an empty
catalog. Two disks of a VM are backed up through the data path (the ``edgeback disk``
CLI into a real storage node), imported by the CLI as a process over RabbitMQ into a
fresh catalog DB; a corrupted manifest is reported and left out; a second import adds
nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from tests.bench.images import DataMaker, remove_image, write_chunk
from tests.integration.conftest import TEST_IDENTITIES
from tests.integration.test_catalog_rpc import ADMIN
from tests.support.cli_runner import cli
from tests.support.storage_node import Node, make_pools, running_node

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.rbd import RbdPool
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import CATALOG_HEARTBEATS, Topology
from edgeback_core.messages import restores as r
from edgeback_core.settings import Secret

pytestmark = pytest.mark.integration

SIZE = 3 * CHUNK_SIZE


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    make_pools(tmp_path / "pools")
    async with running_node(tmp_path / "pools") as running:
        yield running


@pytest.fixture
async def catalog_bus(
    amqp_url: str, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AmqpBus]:
    """A catalog on RabbitMQ under a prefix the CLI is told (``EDGEBACK_BUS_PREFIX``)."""
    prefix = f"t-{uuid.uuid4().hex[:10]}."
    monkeypatch.setenv("EDGEBACK_BUS_PREFIX", prefix)
    monkeypatch.setenv("EDGEBACK_AMQP_URL", amqp_url)
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(
            CatalogDb.open(mongo_url, f"test_import_{uuid.uuid4().hex[:12]}")
        )
        stack.push_async_callback(db.drop)
        bus = await stack.enter_async_context(AmqpBus.open(amqp_url, Topology(prefix=prefix)))
        await serve_catalog(bus, CatalogRpc(Catalog.build(db, box, probe=None), TEST_IDENTITIES))
        yield bus
        await bus.delete_topology([CATALOG_HEARTBEATS])


async def back_up_two_disks(pool: RbdPool, node: Node, ceph_conf: str, names: list[str]) -> None:
    data = DataMaker(seed=9)
    for disk in ("d0", "d1"):
        image = f"test-imp-{uuid.uuid4().hex[:10]}"
        names.append(image)
        await pool.create_image(image, SIZE)
        async with pool.open_image(image, read_only=False) as opened:
            await write_chunk(opened, 1, data.random())
        done = await cli(node, ceph_conf, "disk", "backup", "--image", f"{pool.name}/{image}",
                         "--vm", "vm-a", "--disk", disk, "--version", "v1")  # fmt: skip
        assert done.code == 0, done.err


async def points(bus: AmqpBus) -> list[r.RestorePoint]:
    query = r.RestorePointsQuery(actor=ADMIN, vm_id="vm-a")
    return (await bus.call(r.RESTORE_POINTS, query, r.RestorePointsReply, timeout=10)).points


async def test_import_rebuilds_backup_sets_and_reports_bad_manifests(
    pool: RbdPool, node: Node, ceph_conf: str, catalog_bus: AmqpBus
) -> None:
    names: list[str] = []
    try:
        await back_up_two_disks(pool, node, ceph_conf, names)
    finally:
        for name in names:
            await remove_image(pool, name)
    first = await cli(node, ceph_conf, "catalog", "import")
    assert first.code == 0, first.err
    assert (first.json["backup_sets_added"], first.json["disk_versions_added"]) == (1, 2)
    [point] = await points(catalog_bus)
    assert [(d.disk_id, d.size_bytes, d.manifest_version) for d in point.disks] == [
        ("d0", SIZE, "v1"),
        ("d1", SIZE, "v1"),
    ]
    assert (point.backup_type, point.pool.name) == ("full", "dd")

    again = await cli(node, ceph_conf, "catalog", "import")
    assert (again.json["backup_sets_added"], again.json["disk_versions_added"]) == (0, 0)
    assert [len(p.disks) for p in await points(catalog_bus)] == [2]

    [stored] = [p for p in (node.data_dir / "dd").rglob("*") if p.is_file() and "d1" in p.parts]
    raw = bytearray(stored.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    stored.write_bytes(bytes(raw))
    bad = await cli(node, ceph_conf, "catalog", "import")
    assert bad.code == 3, bad.err  # integrity: something was left out
    rejected = bad.json["rejected"]
    assert isinstance(rejected, list) and [x["manifest"] for x in rejected] == ["vm-a/d1/v1"]
    assert bad.json["imported"] == 1 and bad.json["disk_versions_added"] == 0
