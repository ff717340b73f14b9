"""Fixtures shared by the integration tests (the service URLs live in ``tests/conftest.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from tests.bench.images import remove_image
from tests.integration.broker_control import BusFactory

from edgeback_blocks.rbd import RbdCluster, RbdPool
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import Topology

BusOpener = Callable[[], AbstractAsyncContextManager[Bus]]
"""Opens one more client of the test's bus."""


@pytest.fixture(params=["memory", "amqp"])
def open_bus(request: pytest.FixtureRequest) -> BusOpener:
    """Clients of one bus, in-memory or RabbitMQ, under a topology prefix unique to the test."""
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    if request.param == "memory":
        broker = MemoryBroker()
        return lambda: MemoryBus.open(broker, topology)
    url: str = request.getfixturevalue("amqp_url")
    return lambda: AmqpBus.open(url, topology)


@pytest.fixture
async def buses(amqp_url: str) -> AsyncIterator[BusFactory]:
    """Opens named buses for one test; deletes their topology afterwards."""
    factory = BusFactory(amqp_url)
    yield factory
    await factory.clean_up()


NewImage = Callable[[int], Awaitable[str]]
"""Creates an RBD image of the given size under a unique name; returns the name."""


@pytest.fixture
async def pool(ceph_conf: str, ceph_pool: str) -> AsyncIterator[RbdPool]:
    """The dev cluster's RBD pool, through the project's adapter."""
    async with (
        RbdCluster.connect(ceph_conf, timeout=10, io_threads=8) as cluster,
        cluster.open_pool(ceph_pool) as opened,
    ):
        yield opened


@pytest.fixture
async def new_image(pool: RbdPool) -> AsyncIterator[NewImage]:
    """Factory of uniquely named images; removes them (and their snapshots) afterwards."""
    names: list[str] = []

    async def create(size: int) -> str:
        name = f"test-{uuid.uuid4().hex[:16]}"
        await pool.create_image(name, size)
        names.append(name)
        return name

    yield create
    for name in names:
        await remove_image(pool, name)
