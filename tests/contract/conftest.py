"""Contract fixtures: every test here runs once per bus (in-memory and RabbitMQ)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import QueueSpec, Topology


@dataclass
class BusWorld:
    """Opens clients of one broker under a per-test prefix; records queues to clean up.

    ``open`` connects as broker user ``user``, ``open_other`` as ``other_user`` (on
    RabbitMQ the dev stack's ``api`` user: identities come from the broker).
    """

    open: Callable[..., AbstractAsyncContextManager[Bus]]
    """``open(tracker=None)``: one more client; ``tracker`` counts its deliveries in flight."""
    open_other: Callable[[], AbstractAsyncContextManager[Bus]]
    kind: str
    user: str
    other_user: str
    specs: list[QueueSpec] = field(default_factory=list)

    def spec(self, name: str, **kwargs: Any) -> QueueSpec:
        kwargs.setdefault("exchange", "events")
        kwargs.setdefault("bindings", ("#",))
        kwargs.setdefault("retry_delays", (0.2,))
        spec = QueueSpec(name=name, **kwargs)
        self.specs.append(spec)
        return spec


@pytest.fixture(params=["memory", "amqp"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[BusWorld]:
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    if request.param == "memory":
        broker = MemoryBroker()
        yield BusWorld(
            open=lambda tracker=None: MemoryBus.open(
                broker, topology, tracker, user_id="edgeback-test"
            ),
            open_other=lambda: MemoryBus.open(broker, topology, user_id="api"),
            kind="memory",
            user="edgeback-test",
            other_user="api",
        )
        broker.close()
        return
    url: str = request.getfixturevalue("amqp_url")
    other = os.environ.get("EDGEBACK_AMQP_URL_API", "")
    if not other:
        pytest.fail("EDGEBACK_AMQP_URL_API is not set: see deploy/dev-stack.sh env")
    world = BusWorld(
        open=lambda tracker=None: AmqpBus.open(url, topology, tracker=tracker),
        open_other=lambda: AmqpBus.open(other, topology),
        kind="amqp",
        user=urlsplit(url).username or "guest",
        other_user=urlsplit(other).username or "guest",
    )
    yield world
    async with AmqpBus.open(url, topology) as bus:
        await bus.delete_topology(world.specs)
