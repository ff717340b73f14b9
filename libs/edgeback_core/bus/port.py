"""The ``Bus`` protocol every service codes against, and the types around it.

Two implementations satisfy it: ``AmqpBus`` (RabbitMQ, production) and ``MemoryBus``
(all-in-one mode and unit tests). ``tests/contract`` holds both to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from edgeback_core.bus.topology import ExchangeKind, QueueSpec

T = TypeVar("T", bound=msgspec.Struct)
Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """What the broker says about a delivered message, beside its body.

    ``delivery_count`` counts earlier failed deliveries (0 on the first one);
    ``redelivered`` is set when the message was handed out before. ``user_id`` is the
    publisher's broker user, which RabbitMQ checked against the publishing connection
    (the in-memory bus: the identity its client was opened with); authorize by it,
    never by what the body claims.
    """

    message_id: str
    routing_key: str
    user_id: str = ""
    delivery_count: int = 0
    redelivered: bool = False
    headers: Mapping[str, Any] = field(default_factory=dict)


Handler = Callable[[T, Envelope], Awaitable[None]]
RpcHandler = Callable[[Req], Awaitable[msgspec.Struct]]


class ConsumerHandle(Protocol):
    async def stop(self) -> None:
        """Stop taking new messages, then wait for the in-flight ones to finish.

        Bound it with ``asyncio.timeout``: cancelling ``stop`` only stops the wait;
        handlers still running are cancelled when the bus closes (their messages stay
        unacked and are redelivered).
        """


class InFlightTracker(Protocol):
    """Counts running handlers so the service runner can wait for them to drain."""

    def track(self) -> AbstractAsyncContextManager[None]: ...


class NullTracker:
    """The tracker used when the service runner gives none."""

    @asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        yield


class Bus(Protocol):
    async def publish(
        self,
        exchange: ExchangeKind,
        routing_key: str,
        message: msgspec.Struct,
        *,
        message_id: str | None = None,
    ) -> None:
        """Publish and return once the broker holds the message.

        Commands are mandatory: ``UnroutableError`` when no queue is bound. Events are
        not. A broker nack raises ``TransientError``; no broker, ``UnavailableError``.
        """

    async def consume(
        self, spec: QueueSpec, handler: Handler[T], message_type: type[T]
    ) -> ConsumerHandle:
        """Declare ``spec``'s queue and run ``handler`` on each message (see ``consumer``)."""

    async def subscribe(
        self,
        bindings: tuple[str, ...],
        handler: Handler[T],
        message_type: type[T],
        *,
        backlog: int = 1000,
    ) -> ConsumerHandle:
        """Follow the events exchange live on a queue of this client's own
        (``topology.live_queue``: gone with the client or at ``stop``), bound to
        ``bindings`` and holding at most ``backlog`` messages (the oldest dropped).
        Nothing is acked or retried: a failing handler's message is logged and dropped.
        For live views, which read a durable log for what they missed."""

    async def serve_rpc(
        self, name: str, handler: RpcHandler[Req], request_type: type[Req]
    ) -> ConsumerHandle:
        """Answer calls to ``name``; an ``EdgebackError`` raised travels back to the caller."""

    async def call(
        self,
        name: str,
        request: msgspec.Struct,
        response_type: type[Resp],
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline also sets the request's expiration
    ) -> Resp:
        """Call RPC ``name``; ``DeadlineExceededError`` after ``timeout`` seconds,
        ``UnroutableError`` when no server listens; the server's error is re-raised."""

    async def dead_letters(self, spec: QueueSpec) -> list[bytes]:
        """Take every message out of ``spec``'s DLQ and return the bodies (tests, tools)."""
