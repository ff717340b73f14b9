"""Wire messages (msgspec structs) carried by the bus: base helpers and shared messages."""

from edgeback_core.messages.base import Message, decoder, encode
from edgeback_core.messages.health import Ping, Pong

__all__ = ["Message", "Ping", "Pong", "decoder", "encode"]
