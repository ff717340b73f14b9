"""The aio-pika adapter: :class:`AmqpBus` over RabbitMQ (with ``amqp_wire`` and ``amqp_rpc``
the only modules using aio-pika).

One robust connection (aio-pika reconnects and re-declares what it declared); one
publishing channel with publisher confirms, which also consumes RPC replies on
direct reply-to (``amqp_rpc``); one channel per consumer so that its prefetch is its
own and closing it returns exactly its unacked messages. When the connection drops,
handlers in flight are cancelled (their messages come back on the restored channel),
pending RPC calls fail with ``UnavailableError`` and publishes wait up to
``reconnect_wait`` for the connection to return. Driver errors become
``EdgebackError``s in ``amqp_wire``.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import aio_pika
import msgspec
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
)

from edgeback_core.bus.amqp_rpc import DIRECT_REPLY_TO, ReplyRouter
from edgeback_core.bus.amqp_wire import envelope_of, guarded, table, wire_message
from edgeback_core.bus.consumer import run_delivery, run_live
from edgeback_core.bus.port import NullTracker
from edgeback_core.bus.rpc import answer, reply_of
from edgeback_core.bus.topology import (
    PUBLISHER_HEADER,
    RETRIES_HEADER,
    ROUTING_KEY_HEADER,
    live_queue,
)
from edgeback_core.errors import (
    ConfigError,
    DeadlineExceededError,
    UnavailableError,
)
from edgeback_core.messages.base import encode

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable

    from edgeback_core.bus.port import ConsumerHandle, Handler, InFlightTracker, RpcHandler
    from edgeback_core.bus.topology import ExchangeKind, QueueSpec, Topology

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=msgspec.Struct)
Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)
R = TypeVar("R")

_RPC_PREFETCH = 16
_DELETE_TRIES = 5
_REPUBLISH_PAUSE = 0.1
_EXCHANGES_POLL = 0.5
_CLOSE_WAIT = 10.0


class _AmqpDelivery:
    def __init__(self, bus: AmqpBus, spec: QueueSpec, message: AbstractIncomingMessage) -> None:
        self._bus, self._spec, self._message = bus, spec, message
        self.envelope = envelope_of(message, bus.user_id)

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
        headers = {
            ROUTING_KEY_HEADER: env.routing_key,
            RETRIES_HEADER: retries,
            PUBLISHER_HEADER: env.user_id,
        }
        parked = wire_message(self.body, env.message_id, headers=headers, user_id=self._bus.user_id)
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
        channel.close_callbacks.add(self._channel_lost)

    def _channel_lost(self, _sender: Any, exc: BaseException | None) -> None:
        # Their acks can no longer land and the broker hands their messages out again
        # (to the restored channel or another consumer): stop the handlers rather than
        # let them run beside their own redelivery.
        if self._tasks:
            log.warning(
                "bus.consumer.channel_lost",
                queue=self._queue.name,
                cancelled=len(self._tasks),
                error=repr(exc),
            )
        for task in list(self._tasks):
            task.cancel()

    async def start(
        self,
        run: Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]],
        *,
        no_ack: bool = False,
    ) -> None:
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.get_running_loop().create_task(run(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._tag = await guarded("consume", self._queue.consume(on_message, no_ack=no_ack))

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


async def _close(connection: aio_pika.abc.AbstractRobustConnection) -> None:
    """Close, waiting at most ``_CLOSE_WAIT`` s: a broker that stopped answering must
    not hold a stopping service (or a test's teardown) forever."""
    try:
        async with asyncio.timeout(_CLOSE_WAIT):
            await connection.close()
    except TimeoutError:
        log.warning("bus.close.timed_out", wait_s=_CLOSE_WAIT)


class AmqpBus:
    """:class:`~edgeback_core.bus.port.Bus` over RabbitMQ. Open with :meth:`open`."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractRobustConnection,
        channel: AbstractRobustChannel,
        topology: Topology,
        tracker: InFlightTracker | None,
        *,
        reconnect_wait: float,
        user_id: str,
    ) -> None:
        self._connection, self._channel = connection, channel
        self.user_id = user_id
        self.topology = topology
        self._tracker = tracker or NullTracker()
        self._consumers: list[_AmqpConsumer] = []
        self.declared: dict[str, QueueSpec] = {}
        """Every queue spec this bus declared, by name (what a test deletes afterwards)."""
        self._rpc = ReplyRouter(channel)
        self.reconnect_wait = reconnect_wait

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        topology: Topology,
        *,
        tracker: InFlightTracker | None = None,
        name: str | None = None,
        reconnect_wait: float = 10.0,
        reconnect_interval: float = 1.0,
        cafile: str | None = None,
        declare_exchanges: bool = True,
        exchanges_wait: float = 30.0,
    ) -> AsyncIterator[AmqpBus]:
        """Connect (robustly), open a confirming channel and declare the exchanges.

        ``url`` names the broker user this bus publishes as (``user_id`` of every
        message; the broker refuses another). ``amqps://`` URLs verify the broker's
        certificate against ``cafile`` (or the system's CAs; aiormq also reads
        ``?cafile=`` in the URL). ``name`` is the connection name the broker shows
        (``rabbitmqctl list_connections client_properties``); ``reconnect_interval``
        the pause between reconnect attempts; ``reconnect_wait`` how long a publish
        waits for a lost connection to come back before raising ``UnavailableError``.
        ``declare_exchanges=False`` only waits (up to ``exchanges_wait`` s, then
        ``ConfigError``) until they exist: a backup host's user may not declare, hence
        not delete, them, and its worker may start before any service declared them.
        """
        made: list[aio_pika.RobustConnection] = []

        def tracked(*args: Any, **kwargs: Any) -> aio_pika.RobustConnection:
            made.append(aio_pika.RobustConnection(*args, **kwargs))
            return made[-1]

        connect = aio_pika.connect_robust(
            url,
            fail_fast=True,
            reconnect_interval=reconnect_interval,
            client_properties={"connection_name": name or f"edgeback-{uuid.uuid4().hex[:8]}"},
            ssl_context=None if cafile is None else ssl.create_default_context(cafile=cafile),
            connection_class=cast("type[aio_pika.RobustConnection]", tracked),
        )
        try:
            connection = await guarded("connect", connect)
        except BaseException:
            # a connect that timed out leaves aio-pika's reconnect task running (it takes
            # a cancellation for a lost attempt and tries again): closing the connection
            # ends it, else a stopping process or asyncio.run waits for it forever
            for unfinished in made:
                await _close(unfinished)
            raise
        try:
            channel = await guarded(
                "open channel", connection.channel(publisher_confirms=True, on_return_raises=True)
            )
            user_id = unquote(urlsplit(url).username or "guest")
            bus = cls(
                connection,
                channel,
                topology,
                tracker,
                reconnect_wait=reconnect_wait,
                user_id=user_id,
            )
            if declare_exchanges:
                await bus._declare_exchanges()
            else:
                await bus._await_exchanges(exchanges_wait)
            try:
                yield bus
            finally:
                await bus._kill_consumers()
        finally:
            await _close(connection)

    async def _declare_exchanges(
        self, channel: AbstractChannel | None = None, *, passive: bool = False
    ) -> None:
        topic = aio_pika.ExchangeType.TOPIC
        kinds: tuple[ExchangeKind, ...] = ("commands", "events")
        for kind in kinds:
            name = self.topology.exchange(kind)
            declare = (channel or self._channel).declare_exchange(
                name, topic, durable=True, passive=passive
            )
            await guarded(name, declare)

    async def _await_exchanges(self, wait: float) -> None:
        """Passive declares, each on a throwaway channel (the broker closes the channel
        of a passive declare that finds nothing), until both exchanges exist."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            channel = await guarded("open channel", self._connection.channel())
            try:
                await self._declare_exchanges(channel, passive=True)
                return
            except ConfigError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                log.info("bus.exchanges.missing", prefix=self.topology.prefix)
            finally:
                if not channel.is_closed:
                    await channel.close()
            await asyncio.sleep(_EXCHANGES_POLL)

    async def _kill_consumers(self) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.kill()

    async def publish_raw(
        self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool
    ) -> None:
        """Publish and wait for the confirm. Across a lost connection, wait up to
        ``reconnect_wait`` for it to return and publish again: a message whose confirm
        was lost may then be held twice (same message id; handlers are idempotent)."""
        what = f"publish {routing_key}"
        try:
            async with asyncio.timeout(self.reconnect_wait):
                while True:
                    try:
                        await self._publish_once(exchange, routing_key, message, mandatory)
                        return
                    except UnavailableError as exc:
                        log.warning("bus.publish.interrupted", routing_key=routing_key, error=exc)
                        await asyncio.sleep(_REPUBLISH_PAUSE)
        except TimeoutError as exc:
            raise UnavailableError(
                f"{what}: no broker connection within {self.reconnect_wait}s"
            ) from exc

    async def _publish_once(
        self, exchange: str, routing_key: str, message: aio_pika.Message, mandatory: bool
    ) -> None:
        """One attempt, once the channel is (re)open; connection loss → UnavailableError."""
        await self._channel.ready()
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
        amqp_message = wire_message(
            encode(message),
            message_id or uuid.uuid4().hex,
            type=type(message).__name__,
            user_id=self.user_id,
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
        dlq_args = table(top.dlq_arguments())
        await guarded(name, ch.declare_queue(top.dlq(spec), durable=True, arguments=dlq_args))
        queue = await guarded(
            name, ch.declare_queue(name, durable=True, arguments=table(top.queue_arguments(spec)))
        )
        for pattern in spec.bindings:
            await guarded(name, queue.bind(top.exchange(spec.exchange), routing_key=pattern))
        for delay, retry_name in top.retry_queues(spec).items():
            args = table(top.retry_queue_arguments(spec, delay))
            await guarded(retry_name, ch.declare_queue(retry_name, durable=True, arguments=args))
        self.declared[spec.name] = spec
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

    async def subscribe(
        self,
        bindings: tuple[str, ...],
        handler: Handler[T],
        message_type: type[T],
        *,
        backlog: int = 1000,
    ) -> ConsumerHandle:
        channel = await guarded("open channel", self._connection.channel(publisher_confirms=False))
        spec = live_queue(uuid.uuid4().hex[:16], bindings)
        name, top = self.topology.queue(spec), self.topology
        args = table(top.live_arguments(backlog))
        # exclusive: the broker deletes it with this connection (or at stop, auto-delete)
        queue = await guarded(
            name, channel.declare_queue(name, exclusive=True, auto_delete=True, arguments=args)
        )
        for pattern in bindings:
            await guarded(name, queue.bind(top.exchange("events"), routing_key=pattern))

        async def run(message: AbstractIncomingMessage) -> None:
            envelope = envelope_of(message, self.user_id)
            await run_live(message.body, envelope, handler, message_type, queue=name)

        consumer = _AmqpConsumer(channel, queue)
        await consumer.start(run, no_ack=True)
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
                await self._deleting(
                    f"delete queue {name}", partial(self._channel.queue_delete, name)
                )
        for name in (top.exchange("commands"), top.exchange("events")):
            await self._deleting(
                f"delete exchange {name}", partial(self._channel.exchange_delete, name)
            )

    async def _deleting(self, what: str, op: Callable[[], Awaitable[object]]) -> None:
        """``op()``, idempotent, tried again after a lost connection: RabbitMQ 3.10
        answers a quorum queue's delete that timed out inside it (a busy machine) with a
        connection-level INTERNAL_ERROR. Each try waits up to ``reconnect_wait`` for the
        connection, then up to ``BROKER_OP_TIMEOUT_S`` for the broker's answer."""
        for attempt in range(1, _DELETE_TRIES + 1):
            try:
                async with asyncio.timeout(self.reconnect_wait):
                    await self._channel.ready()
            except TimeoutError as exc:
                raise UnavailableError(
                    f"{what}: no broker connection within {self.reconnect_wait}s"
                ) from exc
            try:
                await guarded(what, op())
                return
            except UnavailableError as exc:
                if attempt == _DELETE_TRIES:
                    raise
                log.warning("bus.delete.interrupted", what=what, attempt=attempt, error=exc)
                await asyncio.sleep(_REPUBLISH_PAUSE)

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
                caller = message.user_id or ""
                kind, body = await answer(
                    handler, request_type, message.body, rpc=name, caller=caller
                )
                if message.reply_to:
                    reply = wire_message(
                        body,
                        uuid.uuid4().hex,
                        type=kind,
                        correlation_id=message.correlation_id,
                        user_id=self.user_id,
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
        correlation_id = uuid.uuid4().hex
        # expiration: a server that picks the request up after the caller gave up skips it
        message = wire_message(
            encode(request),
            correlation_id,
            correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO,
            expiration=timeout,
            type=type(request).__name__,
            user_id=self.user_id,
        )
        try:
            async with asyncio.timeout(timeout):
                await self._channel.ready()
                await guarded("reply-to", self._rpc.ensure_consuming())
                future = self._rpc.expect(correlation_id)
                # Once only: a retry could land on a channel without the reply consumer.
                await self._publish_once("", self.topology.rpc_queue(name), message, True)
                reply = await future
        except TimeoutError as exc:
            raise DeadlineExceededError(f"rpc {name!r} gave no answer in {timeout}s") from exc
        finally:
            self._rpc.forget(correlation_id)
        return reply_of(reply.type or "", reply.body, response_type)
