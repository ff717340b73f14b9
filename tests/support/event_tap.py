"""An outside consumer of edgeback's events: plain aio-pika, none of the project's bus
code, as an integration written by someone else would subscribe.

Its own connection, a server-named exclusive queue bound to the events exchange with
the given patterns; every message is kept with its routing key, AMQP properties and
JSON body, in arrival order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class Tapped:
    routing_key: str
    message_id: str | None
    type: str | None
    body: dict[str, Any]


@dataclass(slots=True)
class EventTap:
    messages: list[Tapped] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(
            Tapped(
                routing_key=message.routing_key or "",
                message_id=message.message_id,
                type=message.type,
                body=json.loads(message.body),
            )
        )
        self._arrived.set()

    async def wait_for(self, seen: Callable[[Tapped], bool], within_s: float) -> Tapped:
        """The first message ``seen`` accepts, waiting up to ``within_s`` for it."""
        async with asyncio.timeout(within_s):
            while True:
                found = next((m for m in self.messages if seen(m)), None)
                if found is not None:
                    return found
                self._arrived.clear()
                await self._arrived.wait()


@asynccontextmanager
async def tap_events(url: str, exchange: str, patterns: Sequence[str]) -> AsyncIterator[EventTap]:
    """Collect what ``exchange`` routes with ``patterns`` until exit (``url``: amqp(s)
    URL; aiormq reads ``?cafile=``)."""
    tap = EventTap()
    connection = await aio_pika.connect(url, client_properties={"connection_name": "event-tap"})
    async with connection:
        channel = await connection.channel()
        events = await channel.get_exchange(exchange, ensure=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for pattern in patterns:
            await queue.bind(events, routing_key=pattern)
        await queue.consume(tap.on_message, no_ack=True)
        yield tap
