"""The broker, not the message, says who is talking: backup hosts' broker users.

Each test makes broker users with ``deploy/dev-stack.sh broker-user`` (the command the
dev stack documents), bound to the test's topology prefix, and drops them afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import aiormq
import pytest
from tests.integration.conftest import dev_stack

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import (
    BACKUP_SET_CREATED,
    HOST_HEARTBEAT,
    START_RUN,
    VM_FINISHED,
    Topology,
    worker_runs,
)
from edgeback_core.errors import ConfigError, PermissionDeniedError
from edgeback_core.ids import BackupHostId
from edgeback_core.messages.catalog import HostHeartbeat

MakeUser = Callable[[str, str], Awaitable[str]]


@pytest.fixture
def topology() -> Topology:
    return Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")


@pytest.fixture
async def broker_user(amqp_url: str, topology: Topology) -> AsyncIterator[MakeUser]:
    """Creates broker users for this test's prefix; returns their amqps URLs."""
    made: list[str] = []

    async def make(name: str, role: str) -> str:
        made.append(name)
        return await dev_stack("broker-user", name, role, topology.prefix)

    yield make
    for name in made:
        await dev_stack("drop-broker-user", name)


def _host() -> str:
    return f"h{uuid.uuid4().hex[:8]}"


async def test_a_host_cannot_consume_another_hosts_queue(
    amqp_url: str, topology: Topology, broker_user: MakeUser
) -> None:
    mine, theirs = _host(), _host()
    url = await broker_user(f"host-{mine}", "host")
    async with AmqpBus.open(amqp_url, topology) as service:  # the exchanges, their queue
        await service.declare(worker_runs(BackupHostId(theirs)))
        async with AmqpBus.open(url, topology, declare_exchanges=False) as host:
            assert host.user_id == f"host-{mine}"
            await host.declare(worker_runs(BackupHostId(mine)))  # its own: allowed
            with pytest.raises(PermissionDeniedError, match="ACCESS_REFUSED"):
                await host.declare(worker_runs(BackupHostId(theirs)))
            connection = await aio_pika.connect(url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.get_queue(
                    topology.queue(worker_runs(BackupHostId(theirs))), ensure=False
                )
                with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                    await queue.consume(lambda _m: asyncio.sleep(0))
        await service.delete_topology(
            [worker_runs(BackupHostId(mine)), worker_runs(BackupHostId(theirs))]
        )


async def test_a_host_binds_and_publishes_only_its_own_routing_keys(
    amqp_url: str, topology: Topology, broker_user: MakeUser
) -> None:
    mine, theirs = _host(), _host()
    url = await broker_user(f"host-{mine}", "host")
    async with AmqpBus.open(amqp_url, topology) as service:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(topology.queue(worker_runs(BackupHostId(mine))))
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=r"run\.#"):
                await queue.bind(topology.exchange("commands"), "run.#")
            channel = await connection.channel()
            events = await channel.get_exchange(topology.exchange("events"), ensure=False)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="catalog"):
                await events.publish(aio_pika.Message(b"{}"), f"catalog.event.{theirs}")
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await channel.declare_exchange(topology.exchange("events"), "topic", durable=True)
            # a worker reports on runs and hands its own runs' VM tasks on, nothing more
            channel = await connection.channel()
            events = await channel.get_exchange(topology.exchange("events"), ensure=False)
            commands = await channel.get_exchange(topology.exchange("commands"), ensure=False)
            await events.publish(aio_pika.Message(b"{}"), VM_FINISHED)
            await events.publish(aio_pika.Message(b"{}"), BACKUP_SET_CREATED)
            await commands.publish(aio_pika.Message(b"{}"), f"run.{mine}")
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match=theirs):
                await commands.publish(aio_pika.Message(b"{}"), f"run.{theirs}")
            channel = await connection.channel()
            commands = await channel.get_exchange(topology.exchange("commands"), ensure=False)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused, match="start"):
                await commands.publish(aio_pika.Message(b"{}"), START_RUN)
        await service.delete_topology([worker_runs(BackupHostId(mine))])


async def test_the_broker_refuses_a_user_id_that_is_not_the_connections(
    amqp_url: str, topology: Topology, broker_user: MakeUser
) -> None:
    host = _host()
    url = await broker_user(f"host-{host}", "host")
    async with (
        AmqpBus.open(amqp_url, topology),
        AmqpBus.open(url, topology, declare_exchanges=False) as bus,
    ):
        beat = HostHeartbeat(host_id=host, hostname="x", version="1", capacity_bytes=0)
        await bus.publish("events", HOST_HEARTBEAT, beat)  # as itself: accepted
        bus.user_id = "catalog"  # what a forging client would put in user_id
        with pytest.raises(ConfigError, match="user_id property set to 'catalog'"):
            await bus.publish("events", HOST_HEARTBEAT, beat)


async def test_a_host_cannot_open_a_bus_before_the_exchanges_exist(
    topology: Topology, broker_user: MakeUser
) -> None:
    url = await broker_user(f"host-{_host()}", "host")
    with pytest.raises(ConfigError, match="NOT_FOUND"):
        async with AmqpBus.open(url, topology, declare_exchanges=False, exchanges_wait=1):
            pass


def test_dev_stack_env_names_an_amqps_url_per_identity() -> None:
    if os.environ.get("EDGEBACK_REQUIRE_SERVICES") != "1":
        pytest.skip("checks the dev stack's env")
    for var in ("EDGEBACK_AMQP_URL", "EDGEBACK_AMQP_URL_API", "EDGEBACK_AMQP_URL_CATALOG"):
        assert os.environ[var].startswith("amqps://"), var
    assert Path(os.environ["EDGEBACK_AMQP_CAFILE"]).is_file()
