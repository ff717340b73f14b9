"""Clean-up after end-to-end tests: what their service processes left on the broker and
the catalog DB server (the processes themselves: ``tests.support.processes``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pymongo

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import QUEUES, QueueSpec, Topology


def forget_deployment(
    amqp_url: str,
    mongo_url: str,
    *,
    prefix: str,
    database: str,
    queues: Sequence[QueueSpec] = (),
) -> None:
    """Remove what a test's services left on the shared broker and catalog DB server.

    The services' durable queues (every fixed queue of the topology, and ``queues``,
    e.g. a backup host's run queue) outlive them; the catalog's database too. Called from fixture
    teardown, outside any running event loop.
    """

    async def delete_queues() -> None:
        async with AmqpBus.open(amqp_url, Topology(prefix=prefix)) as bus:
            await bus.delete_topology([*QUEUES, *queues])

    asyncio.run(delete_queues())
    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(mongo_url) as client:
        client.drop_database(database)
