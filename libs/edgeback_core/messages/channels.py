"""Every routing key edgeback publishes events on or accepts commands from, with its
message type: the registry behind ``docs/asyncapi.json`` (X9).

Add a channel here when a new event or command goes on the bus; the AsyncAPI test then
asks for the document to be regenerated:
``python -m edgeback_core.messages.channels > docs/asyncapi.json``.
"""

from __future__ import annotations

from edgeback_core.bus.topology import HOST_HEARTBEAT
from edgeback_core.messages.asyncapi import Channel, document, render
from edgeback_core.messages.catalog import HostHeartbeat

VERSION = "1.0.0"
"""Version of the message contract (the AsyncAPI ``info.version``)."""

CHANNELS: tuple[Channel, ...] = (
    Channel(
        exchange="events",
        routing_key=HOST_HEARTBEAT,
        message=HostHeartbeat,
        summary="A backup host's worker is alive (every few seconds per worker).",
    ),
)


def asyncapi_json() -> str:
    return render(document(CHANNELS, version=VERSION))


if __name__ == "__main__":
    print(asyncapi_json(), end="")
