"""Fixtures shared by the integration tests (the service URLs live in ``tests/conftest.py``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol

import pytest
from tests.bench.images import remove_image
from tests.integration.broker_control import BusFactory

from edgeback_blocks.rbd import RbdCluster, RbdPool
from edgeback_catalog.principals import Identities
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import QueueSpec, Topology

TEST_USER = "edgeback-test"
"""The tests' broker user (``EDGEBACK_AMQP_URL``); the memory bus's clients use it too."""

TEST_IDENTITIES = Identities(test=frozenset({TEST_USER}))
"""The catalog's identities in tests: the defaults, plus the tests' user as every service."""

DEV_STACK = Path(__file__).resolve().parents[2] / "deploy" / "dev-stack.sh"


class BusOpener(Protocol):
    """Opens one more client of the test's bus, as broker user ``user`` (default: the
    tests' user); ``api``, ``scheduler``, ... use the dev stack's service users,
    ``host-<id>`` a backup host's user made for the test's topology prefix."""

    def __call__(self, user: str | None = None) -> AbstractAsyncContextManager[Bus]: ...


async def dev_stack(*args: str) -> str:
    """Runs ``deploy/dev-stack.sh`` (broker users); its output."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(DEV_STACK),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


class BrokerUsers:
    """amqps URLs of broker users for one test's topology; drops the host users it made."""

    def __init__(self, url: str, topology: Topology) -> None:
        self._url, self._topology = url, topology
        self._made: dict[str, str] = {}

    async def url(self, user: str | None) -> str:
        if user is None or user == TEST_USER:
            return self._url
        service = os.environ.get(f"EDGEBACK_AMQP_URL_{user.upper()}")
        if service:
            return service
        if user not in self._made:
            assert user.startswith("host-"), f"no broker user {user!r} in the dev stack"
            made = await dev_stack("broker-user", user, "host", self._topology.prefix)
            self._made[user] = made
        return self._made[user]

    async def drop(self) -> None:
        for user in self._made:
            await dev_stack("drop-broker-user", user)


@pytest.fixture(params=["memory", "amqp"])
async def open_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusOpener]:
    """Clients of one bus, in-memory or RabbitMQ, under a topology prefix unique to the test."""
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    if request.param == "memory":
        broker = MemoryBroker()
        yield lambda user=None: MemoryBus.open(broker, topology, user_id=user or TEST_USER)
        return
    amqp_url = request.getfixturevalue("amqp_url")
    users = BrokerUsers(amqp_url, topology)
    declared: dict[str, QueueSpec] = {}

    @asynccontextmanager
    async def open_amqp(user: str | None = None) -> AsyncIterator[Bus]:
        is_host = (user or "").startswith("host-")
        url = await users.url(user)
        async with AmqpBus.open(url, topology, declare_exchanges=not is_host) as bus:
            try:
                yield bus
            finally:
                declared.update(bus.declared)

    yield open_amqp
    await users.drop()
    async with AmqpBus.open(amqp_url, topology) as cleaner:  # quorum queues are not free
        await cleaner.delete_topology(declared.values())


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
