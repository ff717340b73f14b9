"""The aio-pika adapter: :class:`AmqpBus` over RabbitMQ (the only module using aio-pika).

One robust connection (aio-pika reconnects and re-declares what it declared); one
publishing channel with publisher confirms, which also consumes RPC replies on
direct reply-to; one channel per consumer so that its prefetch is its own and closing
it returns exactly its unacked messages. Driver errors become ``EdgebackError``s here.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika
import aiormq.exceptions
import msgspec
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from edgeback_core.bus.consumer import run_delivery
from edgeback_core.bus.port import Envelope, NullTracker
from edgeback_core.bus.rpc import answer, reply_of
from edgeback_core.bus.topology import RETRIES_HEADER, ROUTING_KEY_HEADER
from edgeback_core.errors import (
    ConfigError,
    DeadlineExceededError,
    EdgebackError,
    TransientError,
    UnavailableError,
    UnroutableError,
)
from edgeback_core.messages.base import encode

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping

    from aiormq.abc import FieldTable

    from edgeback_core.bus.port import ConsumerHandle, Handler, InFlightTracker, RpcHandler
    from edgeback_core.bus.topology import ExchangeKind, QueueSpec, Topology

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=msgspec.Struct)
Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)
R = TypeVar("R")

_DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_RPC_PREFETCH = 16

_CONNECTION_ERRORS = (
    OSError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
)


def translate(exc: Exception, what: str) -> EdgebackError:
    """Our error for a driver error raised while doing ``what``."""
    if isinstance(exc, aiormq.exceptions.PublishError):
        return UnroutableError(f"{what}: no queue bound", reason=str(exc))
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return ConfigError(f"{what}: topology differs from the broker's", reason=str(exc))
    if isinstance(exc, aiormq.exceptions.DeliveryError):
        return TransientError(f"{what}: broker refused the message", reason=str(exc))
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return ConfigError(f"{what}: authentication refused", reason=str(exc))
    if isinstance(exc, TimeoutError):
        return UnavailableError(f"{what}: broker timed out", reason=str(exc))
    return UnavailableError(f"{what}: broker unavailable", reason=str(exc))


async def guarded(what: str, op: Awaitable[R]) -> R:
    try:
        return await op
    except (*_CONNECTION_ERRORS, aiormq.exceptions.AMQPError, TimeoutError) as exc:
        raise translate(exc, what) from exc


def envelope_of(message: AbstractIncomingMessage) -> Envelope:
    headers: dict[str, Any] = dict(message.headers or {})
    count = headers.get("x-delivery-count", 0)
    return Envelope(
        message_id=message.message_id or "",
        routing_key=str(headers.get(ROUTING_KEY_HEADER) or message.routing_key or ""),
        delivery_count=count if isinstance(count, int) else 0,
        redelivered=bool(message.redelivered),
        headers=headers,
    )


def _table(arguments: Mapping[str, str | int]) -> FieldTable:
    return dict(arguments.items())


def _message(body: bytes, message_id: str, **properties: Any) -> aio_pika.Message:
    return aio_pika.Message(
        body=body,
        message_id=message_id,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        **properties,
    )


class _AmqpDelivery:
    def __init__(self, bus: AmqpBus, spec: QueueSpec, message: AbstractIncomingMessage) -> None:
        self._bus, self._spec, self._message = bus, spec, message
        self.envelope = envelope_of(message)

    @property
    def body(self) -> bytes:
        return self._message.body

    async def ack(self) -> None:
        await guarded("ack", self._message.ack())

    async def dead_letter(self) -> None:
        await guarded("reject", self._message.reject(requeue=False))

    async def requeue(self) -> None:
        await guarded("nack", self._message.nack(requeue=True))

    async def retry(self, delay: float, retries: int) -> None:
        env = self.envelope
        headers = {ROUTING_KEY_HEADER: env.routing_key, RETRIES_HEADER: retries}
        parked = _message(self.body, env.message_id, headers=headers)
        retry_queue = self._bus.topology.retry_queue(self._spec, delay)
        # publish (confirmed) before the ack: a crash in between duplicates, never loses
        await self._bus.publish_raw("", retry_queue, parked, mandatory=True)
        await self.ack()


class _AmqpConsumer:
    """One consumer on its own channel; runs each delivery in a task it owns."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        self._channel, self._queue = channel, queue
        self._tasks: set[asyncio.Task[None]] = set()
        self._tag: str | None = None

    async def start(
        self, run: Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]]
    ) -> None:
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.get_running_loop().create_task(run(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._tag = await guarded("consume", self._queue.consume(on_message))

    async def stop(self) -> None:
        if self._tag is not None and not self._channel.is_closed:
            tag, self._tag = self._tag, None
            await guarded("cancel consumer", self._queue.cancel(tag))
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        await self.kill()

    async def kill(self) -> None:
        """Cancel running handlers and close the channel: the broker requeues their messages."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not self._channel.is_closed:
            await self._channel.close()


class AmqpBus:
    """:class:`~edgeback_core.bus.port.Bus` over RabbitMQ. Open with :meth:`open`."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractRobustConnection,
        channel: AbstractChannel,
        topology: Topology,
        tracker: InFlightTracker | None,
    ) -> None:
        self._connection, self._channel = connection, channel
        self.topology = topology
        self._tracker = tracker or NullTracker()
        self._consumers: list[_AmqpConsumer] = []
        self._replies: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}
        self._reply_lock = asyncio.Lock()
        self._reply_queue: AbstractQueue | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls, url: str, topology: Topology, *, tracker: InFlightTracker | None = None
    ) -> AsyncIterator[AmqpBus]:
        """Connect (robustly), open a confirming channel and declare the exchanges."""
        connection = await guarded("connect", aio_pika.connect_robust(url, fail_fast=True))
        try:
            channel = await guarded(
                "open channel", connection.channel(publisher_confirms=True, on_return_raises=True)
            )
            bus = cls(connection, channel, topology, tracker)
            await bus._declare_exchanges()
            try:
                yield bus
            finally:
                await bus._kill_consumers()
        finally:
            await connection.close()

    async def _declare_exchanges(self) -> None:
        topic = aio_pika.ExchangeType.TOPIC
        kinds: tuple[ExchangeKind, ...] = ("commands", "events")
        for kind in kinds:
            name = self.topology.exchange(kind)
            await guarded(name, self._channel.declare_exchange(name, topic, durable=True))
        dlx = self.topology.dlx
        direct = aio_pika.ExchangeType.DIRECT
        await guarded(dlx, self._channel.declare_exchange(dlx, direct, durable=True))

    async def _kill_consumers(self) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.kill()

    async def publish_raw(
        self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool
    ) -> None:
        target = (
            self._channel.default_exchange
            if exchange == ""
            else await guarded(exchange, self._channel.get_exchange(exchange, ensure=False))
        )
        await guarded(
            f"publish {routing_key}", target.publish(message, routing_key, mandatory=mandatory)
        )

    async def publish(
        self,
        exchange: ExchangeKind,
        routing_key: str,
        message: msgspec.Struct,
        *,
        message_id: str | None = None,
    ) -> None:
        amqp_message = _message(
            encode(message), message_id or uuid.uuid4().hex, type=type(message).__name__
        )
        await self.publish_raw(
            self.topology.exchange(exchange),
            routing_key,
            amqp_message,
            mandatory=exchange == "commands",
        )

    async def declare(
        self, spec: QueueSpec, channel: AbstractChannel | None = None
    ) -> AbstractQueue:
        """Declare ``spec``'s work queue, its DLQ and delay queues, and bind them (idempotent)."""
        ch, top = channel or self._channel, self.topology
        name = top.queue(spec)
        dlq = await guarded(
            name,
            ch.declare_queue(top.dlq(spec), durable=True, arguments=_table(top.dlq_arguments())),
        )
        await guarded(name, dlq.bind(top.dlx, routing_key=name))
        queue = await guarded(
            name, ch.declare_queue(name, durable=True, arguments=_table(top.queue_arguments(spec)))
        )
        for pattern in spec.bindings:
            await guarded(name, queue.bind(top.exchange(spec.exchange), routing_key=pattern))
        for delay, retry_name in top.retry_queues(spec).items():
            args = _table(top.retry_queue_arguments(spec, delay))
            await guarded(retry_name, ch.declare_queue(retry_name, durable=True, arguments=args))
        return queue

    async def consume(
        self, spec: QueueSpec, handler: Handler[T], message_type: type[T]
    ) -> ConsumerHandle:
        channel = await guarded("open channel", self._connection.channel(publisher_confirms=False))
        await guarded("qos", channel.set_qos(prefetch_count=spec.prefetch))
        queue = await self.declare(spec, channel)

        async def run(message: AbstractIncomingMessage) -> None:
            delivery = _AmqpDelivery(self, spec, message)
            await run_delivery(
                delivery, handler, message_type, spec=spec, queue=queue.name, tracker=self._tracker
            )

        consumer = _AmqpConsumer(channel, queue)
        await consumer.start(run)
        self._consumers.append(consumer)
        return consumer

    async def dead_letters(self, spec: QueueSpec) -> list[bytes]:
        await self.declare(spec)
        dlq = await guarded("dlq", self._channel.get_queue(self.topology.dlq(spec)))
        bodies: list[bytes] = []
        while (message := await guarded("get", dlq.get(no_ack=True, fail=False))) is not None:
            bodies.append(message.body)
        return bodies

    async def delete_topology(self, specs: Iterable[QueueSpec]) -> None:
        """Delete ``specs``' queues and this prefix's exchanges (test clean-up, tools)."""
        top = self.topology
        for spec in specs:
            names = [top.queue(spec), top.dlq(spec), *top.retry_queues(spec).values()]
            for name in names:
                await guarded(name, self._channel.queue_delete(name))
        for name in (top.exchange("commands"), top.exchange("events"), top.dlx):
            await guarded(name, self._channel.exchange_delete(name))

    async def serve_rpc(
        self, name: str, handler: RpcHandler[Req], request_type: type[Req]
    ) -> ConsumerHandle:
        """Serve ``name`` on an auto-delete queue: with no server left, calls are unroutable."""
        channel = await guarded("open channel", self._connection.channel(publisher_confirms=False))
        await guarded("qos", channel.set_qos(prefetch_count=_RPC_PREFETCH))
        queue = await guarded(
            name, channel.declare_queue(self.topology.rpc_queue(name), auto_delete=True)
        )

        async def run(message: AbstractIncomingMessage) -> None:
            async with self._tracker.track():
                kind, body = await answer(handler, request_type, message.body, rpc=name)
                if message.reply_to:
                    reply = _message(
                        body, uuid.uuid4().hex, type=kind, correlation_id=message.correlation_id
                    )
                    publish = channel.default_exchange.publish(
                        reply, message.reply_to, mandatory=False
                    )
                    await guarded("reply", publish)
                await guarded("ack", message.ack())

        consumer = _AmqpConsumer(channel, queue)
        await consumer.start(run)
        self._consumers.append(consumer)
        return consumer

    async def call(
        self,
        name: str,
        request: msgspec.Struct,
        response_type: type[Resp],
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline also sets the request's expiration
    ) -> Resp:
        await self._consume_replies()
        correlation_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._replies[correlation_id] = future
        # expiration: a server that picks the request up after the caller gave up skips it
        message = _message(
            encode(request),
            correlation_id,
            correlation_id=correlation_id,
            reply_to=_DIRECT_REPLY_TO,
            expiration=timeout,
            type=type(request).__name__,
        )
        try:
            async with asyncio.timeout(timeout):
                await self.publish_raw("", self.topology.rpc_queue(name), message, mandatory=True)
                reply = await future
        except TimeoutError as exc:
            raise DeadlineExceededError(f"rpc {name!r} gave no answer in {timeout}s") from exc
        finally:
            self._replies.pop(correlation_id, None)
        return reply_of(reply.type or "", reply.body, response_type)

    async def _consume_replies(self) -> None:
        """Direct reply-to: consume the pseudo-queue (no-ack) on the publishing channel."""
        async with self._reply_lock:
            if self._reply_queue is None:
                queue = await guarded(
                    "reply-to", self._channel.get_queue(_DIRECT_REPLY_TO, ensure=False)
                )
                await guarded("reply-to", queue.consume(self._on_reply, no_ack=True))
                self._reply_queue = queue

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._replies.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message)
