"""``serve --all`` registers its local pool through the catalog RPCs the API uses, for
the first admin, on the in-memory bus: waits for the heartbeat's host, activates it,
registers the pool once (a later start finds it), and a refusal is logged, not raised."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from edgeback_cli import site_pool
from edgeback_cli.site_pool import node_url_of, register_site_pool
from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.topology import Topology
from edgeback_core.errors import HostNotActiveError, NotFoundError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as n

NOW = datetime(2026, 12, 8, tzinfo=UTC)
URL = "http://127.0.0.1:8710"


@dataclass
class FakeCatalog:
    """The four RPCs, answered from memory; what each was asked, by which broker user."""

    heartbeats_missing: int = 1
    active: bool = False
    pools: list[m.PoolInfo] = field(default_factory=list)
    refuse_register: bool = False
    calls: list[tuple[str, str | None]] = field(default_factory=list)

    def host(self) -> m.HostInfo:
        return m.HostInfo(
            id="bk-01", hostname="bk-01", version="1", capacity_bytes=0, active=self.active,
            online=True, groups=[], registered_at=NOW, last_seen=NOW,
        )  # fmt: skip

    async def get(self, req: m.HostGet) -> m.HostInfo:
        self.calls.append(("get", req.actor.user))
        if self.heartbeats_missing:
            self.heartbeats_missing -= 1
            raise NotFoundError("backup host bk-01 not found")
        return self.host()

    async def activate(self, req: m.HostActivate) -> m.HostInfo:
        self.calls.append(("activate", req.actor.user))
        self.active = True
        return self.host()

    async def listed(self, req: m.PoolList) -> m.PoolListReply:
        self.calls.append(("list", req.actor.user))
        return m.PoolListReply(pools=[p for p in self.pools if p.node_url == req.node_url])

    async def register(self, req: m.PoolRegister) -> m.PoolInfo:
        self.calls.append(("register", req.actor.user))
        if self.refuse_register:
            raise HostNotActiveError("backup host bk-01 is not activated")
        figures = m.PoolFigures(capacity_bytes=1, used_bytes=0, free_bytes=1, checked_at=NOW)
        pool = m.PoolInfo(
            id="p1", name=req.name, node_url=req.node_url, host_id=req.host_id,
            description=req.description, kind="dedup", encrypted=False, created_at=NOW,
            created_by=req.actor.user or "", status=figures,
        )  # fmt: skip
        self.pools.append(pool)
        return pool


@pytest.fixture
async def bus(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[MemoryBus, FakeCatalog]]:
    monkeypatch.setattr(site_pool, "POLL_S", 0.0)
    broker, topology, catalog = MemoryBroker(), Topology(prefix="t."), FakeCatalog()
    async with (
        MemoryBus.open(broker, topology, user_id="catalog") as server,
        MemoryBus.open(broker, topology, user_id="api") as api,
    ):
        await server.serve_rpc(n.HOST_GET, catalog.get, m.HostGet)
        await server.serve_rpc(n.HOST_ACTIVATE, catalog.activate, m.HostActivate)
        await server.serve_rpc(n.POOL_LIST, catalog.listed, m.PoolList)
        await server.serve_rpc(n.POOL_REGISTER, catalog.register, m.PoolRegister)
        yield api, catalog


async def _register(api: MemoryBus) -> m.PoolInfo | None:
    return await register_site_pool(
        api, admin="admin", host_id="bk-01", node_url=URL, pool="default"
    )


async def test_activates_the_host_then_registers_the_pool_once(
    bus: tuple[MemoryBus, FakeCatalog],
) -> None:
    api, catalog = bus
    made = await _register(api)
    assert made is not None and (made.name, made.host_id, made.created_by) == (
        "default", "bk-01", "admin",
    )  # fmt: skip
    assert catalog.calls == [("get", "admin"), ("get", "admin"), ("activate", "admin"),
                             ("list", "admin"), ("register", "admin")]  # fmt: skip
    catalog.calls.clear()
    assert await _register(api) == made  # a later start: found, nothing registered again
    assert catalog.calls == [("get", "admin"), ("list", "admin")]


async def test_a_refusal_is_logged_and_changes_nothing(
    bus: tuple[MemoryBus, FakeCatalog],
) -> None:
    api, catalog = bus
    catalog.refuse_register = True
    with capture_logs() as logs:
        assert await _register(api) is None
    assert catalog.pools == []
    failed = [e for e in logs if e["event"] == "pool.register_failed"]
    assert [e["error_code"] for e in failed] == ["host_not_active"]


def test_the_node_url_is_where_the_site_worker_reaches_the_node() -> None:
    assert node_url_of("127.0.0.1", 8710, tls=False) == URL
    assert node_url_of("0.0.0.0", 8710, tls=True) == "https://127.0.0.1:8710"
    assert node_url_of("::", 9000, tls=False) == "http://[::1]:9000"
    assert node_url_of("10.0.0.5", 8710, tls=False) == "http://10.0.0.5:8710"
    assert node_url_of("127.0.0.1", 0, tls=False) is None
