"""Contract fixtures: every test here runs once per bus (in-memory and RabbitMQ)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.port import Bus
from edgeback_core.bus.topology import QueueSpec, Topology


@dataclass
class BusWorld:
    """Opens clients of one broker under a per-test prefix; records queues to clean up."""

    open: Callable[..., AbstractAsyncContextManager[Bus]]
    """``open(tracker=None)``: one more client; ``tracker`` counts its deliveries in flight."""
    kind: str
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
            open=lambda tracker=None: MemoryBus.open(broker, topology, tracker), kind="memory"
        )
        broker.close()
        return
    url: str = request.getfixturevalue("amqp_url")
    world = BusWorld(
        open=lambda tracker=None: AmqpBus.open(url, topology, tracker=tracker), kind="amqp"
    )
    yield world
    async with AmqpBus.open(url, topology) as bus:
        await bus.delete_topology(world.specs)
