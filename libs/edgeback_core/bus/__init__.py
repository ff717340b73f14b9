"""The message bus: the ``Bus`` protocol, its topology, and the RabbitMQ and in-memory
implementations (``edgeback_core.bus.amqp`` imports aio-pika; import it only when used)."""

from edgeback_core.bus.memory import MemoryBroker, MemoryBus
from edgeback_core.bus.port import Bus, ConsumerHandle, Envelope, InFlightTracker
from edgeback_core.bus.topology import QueueSpec, Topology

__all__ = [
    "Bus",
    "ConsumerHandle",
    "Envelope",
    "InFlightTracker",
    "MemoryBroker",
    "MemoryBus",
    "QueueSpec",
    "Topology",
]
