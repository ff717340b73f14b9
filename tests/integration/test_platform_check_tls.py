"""A platform served over https with a private CA is checked and browsed from a backup
host whose worker trusts that CA (``EDGEBACK_WORKER_CA_FILE``), as its runs do; a worker
without it refuses with ``platform_tls_failed``. The catalog (real catalog DB) asks the
workers over the bus; the platform is the emulator's app on a TLS loopback server."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from tests.integration.conftest import BusOpener
from tests.integration.test_resource_checks import ADMIN, T, active_host, probing_catalog
from tests.support.emulator.app import make_app
from tests.support.emulator.runtime import Emulator
from tests.support.emulator.seed import SeedPlan, build
from tests.support.emulator.state import CephTarget
from tests.support.tls import make_tls

from edgeback_catalog.mongo import CatalogDb, Coll
from edgeback_core.bus.port import Bus
from edgeback_core.errors import EdgebackError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import worker as w
from edgeback_worker.settings import WorkerSettings

pytestmark = pytest.mark.integration
AK, SK = "AK-tls", "sk-tls-very-secret"


@dataclass
class World:
    bus: Bus
    db: CatalogDb
    port: int
    trusting: str
    """A backup host whose worker has the platform's CA as its CA file."""
    other: str
    """A backup host whose worker has no CA file (the system's CAs)."""

    def register(self, host: str) -> m.PlatformRegister:
        return m.PlatformRegister(
            actor=ADMIN, name="edge-tls", address="127.0.0.1", port=self.port, ssl=True,
            access_key=AK, secret_key=SK, default_host_id=host,
        )  # fmt: skip


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """The emulator's API over https with a certificate of a fresh CA: (port, CA file)."""
    tls = make_tls(tmp_path)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(tls.cert_file, tls.key_file)
    state = build(SeedPlan(vms=3, disk_mib=(8,)), CephTarget(conf="/nonexistent"))
    emulator = Emulator(state=state, path=tmp_path / "state.json", secrets={AK: SK})
    server = TestServer(make_app(emulator, with_ceph=False), host="127.0.0.1")
    await server.start_server(ssl=served)
    try:
        yield server.port or 0, tls.ca_file
    finally:
        await server.close()


@pytest.fixture
async def world(
    open_bus: BusOpener, mongo_url: str, platform: tuple[int, Path]
) -> AsyncIterator[World]:
    port, ca_file = platform
    trusting, other = (f"bk-{uuid.uuid4().hex[:8]}" for _ in range(2))
    workers = WorkerSettings(host_id=trusting, ca_file=str(ca_file)), WorkerSettings(host_id=other)
    async with AsyncExitStack() as stack:
        client, db = await probing_catalog(stack, open_bus, mongo_url, *workers)
        for host in (trusting, other):
            await active_host(client, db, host)
        yield World(client, db, port, trusting, other)


async def test_checks_and_browsing_trust_the_workers_ca_file(world: World) -> None:
    with pytest.raises(EdgebackError) as untrusted:
        await world.bus.call(
            names.PLATFORM_REGISTER, world.register(world.other), m.Done, timeout=T
        )
    assert untrusted.value.code == "platform_tls_failed"
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.value.message
    assert await world.db.find(Coll.PLATFORMS, {}) == []

    info = await world.bus.call(
        names.PLATFORM_REGISTER, world.register(world.trusting), m.PlatformInfo, timeout=T
    )
    assert info.default_host_id == world.trusting
    browse = m.PlatformBrowse(actor=ADMIN, platform_id=info.id)
    listed = await world.bus.call(names.PLATFORM_BROWSE, browse, w.PlatformInventory, timeout=T)
    assert sum(len(h.vms) for h in listed.hosts) == 3

    # the same listing asked of the other host's worker: refused, its CA unknown there
    access = w.PlatformAccess(
        address="127.0.0.1", port=world.port, ssl=True, access_key=AK, secret_key=SK
    )
    rpc = w.platform_inventory_rpc(BackupHostId(world.other))
    with pytest.raises(EdgebackError) as refused:
        request = w.PlatformInventoryRequest(access=access, budget_s=10)
        await world.bus.call(rpc, request, w.PlatformInventory, timeout=T)
    assert refused.value.code == "platform_tls_failed"
