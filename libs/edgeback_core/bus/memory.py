"""In-memory bus with RabbitMQ's semantics, for the all-in-one mode and unit tests.

A :class:`MemoryBroker` holds the queues; each :class:`MemoryBus` is one client of it
(like one AMQP connection): closing a bus cancels its running handlers and puts their
unacked messages back, redelivered, exactly as a broker does when a connection drops.
Retry delays are asyncio timers, scaled by ``delay_scale`` so tests need not wait.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from edgeback_core.bus.consumer import run_delivery, run_live
from edgeback_core.bus.memory_rpc import MemoryRpc
from edgeback_core.bus.port import Envelope, NullTracker
from edgeback_core.bus.topology import (
    RETRIES_HEADER,
    ExchangeKind,
    QueueSpec,
    Topology,
    live_queue,
    topic_matches,
)
from edgeback_core.errors import UnroutableError
from edgeback_core.messages.base import encode

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from edgeback_core.bus.port import ConsumerHandle, Handler, InFlightTracker, RpcHandler

T = TypeVar("T", bound=msgspec.Struct)

DEFAULT_USER = "guest"
"""The identity of a client opened without one (RabbitMQ's default user)."""
Req = TypeVar("Req", bound=msgspec.Struct)
Resp = TypeVar("Resp", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Stored:
    body: bytes
    envelope: Envelope


@dataclass(slots=True, eq=False)
class _Queue:
    spec: QueueSpec
    ready: deque[_Stored] = field(default_factory=deque)
    dead: list[bytes] = field(default_factory=list)
    nonempty: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, stored: _Stored) -> None:
        self.ready.append(stored)
        self.nonempty.set()

    def give_back(self, stored: _Stored) -> None:
        """A delivery failed (nack requeue, consumer gone): count it, maybe dead-letter."""
        env = stored.envelope
        count = env.delivery_count + 1
        if count > self.spec.delivery_limit:
            self.dead.append(stored.body)
            return
        env = replace(env, delivery_count=count, redelivered=True)
        self.ready.appendleft(replace(stored, envelope=env))
        self.nonempty.set()

    async def take(self) -> _Stored:
        # every waiter wakes on set(); the losers see an empty deque and wait again
        while not self.ready:
            self.nonempty.clear()
            await self.nonempty.wait()
        return self.ready.popleft()


class MemoryBroker:
    """The shared state of every :class:`MemoryBus` of one process."""

    def __init__(self, *, delay_scale: float = 1.0) -> None:
        self.delay_scale = delay_scale
        self.queues: dict[str, _Queue] = {}
        self.rpc = MemoryRpc()
        self._timers: set[asyncio.TimerHandle] = set()

    def declare(self, name: str, spec: QueueSpec) -> _Queue:
        return self.queues.setdefault(name, _Queue(spec))

    def route(self, exchange: ExchangeKind, routing_key: str) -> list[_Queue]:
        return [
            q
            for q in self.queues.values()
            if q.spec.exchange == exchange
            and any(topic_matches(p, routing_key) for p in q.spec.bindings)
        ]

    def later(self, delay: float, queue: _Queue, stored: _Stored) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            queue.put(stored)

        handle = asyncio.get_running_loop().call_later(delay * self.delay_scale, fire)
        self._timers.add(handle)

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


class _MemoryDelivery:
    def __init__(self, broker: MemoryBroker, queue: _Queue, stored: _Stored) -> None:
        self._broker, self._queue, self._stored = broker, queue, stored
        self.settled = False

    @property
    def body(self) -> bytes:
        return self._stored.body

    @property
    def envelope(self) -> Envelope:
        return self._stored.envelope

    async def ack(self) -> None:
        self.settled = True

    async def dead_letter(self) -> None:
        self.settled = True
        self._queue.dead.append(self.body)

    async def requeue(self) -> None:
        self.settled = True
        self._queue.give_back(self._stored)

    async def retry(self, delay: float, retries: int) -> None:
        headers = {**self.envelope.headers, RETRIES_HEADER: retries}
        fresh = Envelope(
            message_id=self.envelope.message_id,
            routing_key=self.envelope.routing_key,
            user_id=self.envelope.user_id,
            headers=headers,
        )
        self._broker.later(delay, self._queue, _Stored(body=self.body, envelope=fresh))
        self.settled = True

    def give_back(self) -> None:
        """The consumer died with this message unsettled."""
        if not self.settled:
            self.settled = True
            self._queue.give_back(self._stored)


class _MemoryConsumer:
    def __init__(self, bus: MemoryBus, queue: _Queue, run: Any, name: str) -> None:
        self._bus, self._queue, self._run, self._name = bus, queue, run, name
        self._slots = asyncio.Semaphore(queue.spec.prefetch)
        self._tasks: dict[asyncio.Task[None], _MemoryDelivery] = {}
        self._loop = asyncio.get_running_loop().create_task(self._intake())

    async def _intake(self) -> None:
        queue = self._queue
        while True:
            await self._slots.acquire()
            try:
                stored = await queue.take()
            except BaseException:
                self._slots.release()
                raise
            # no await between taking the message and owning it: it cannot get lost
            delivery = _MemoryDelivery(self._bus.broker, queue, stored)
            task = asyncio.get_running_loop().create_task(self._handle(delivery))
            self._tasks[task] = delivery

    async def _handle(self, delivery: _MemoryDelivery) -> None:
        try:
            await self._run(delivery)
        finally:
            self._slots.release()
            self._tasks.pop(asyncio.current_task(), None)  # type: ignore[arg-type]

    async def stop(self) -> None:
        self._loop.cancel()
        await asyncio.gather(self._loop, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def kill(self) -> None:
        """Cancel everything; unsettled messages go back to the queue, redelivered."""
        self._loop.cancel()
        pending = dict(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(self._loop, *pending, return_exceptions=True)
        for delivery in pending.values():
            delivery.give_back()


class _MemoryLive:
    """A live subscription: its own bounded queue, read in order, removed at stop."""

    def __init__(self, broker: MemoryBroker, name: str, queue: _Queue, run: Any) -> None:
        self._broker, self._name, self._queue = broker, name, queue
        self._loop = asyncio.get_running_loop().create_task(self._intake(run))

    async def _intake(self, run: Any) -> None:
        while True:
            stored = await self._queue.take()
            await run(stored)

    async def stop(self) -> None:
        await self.kill()

    async def kill(self) -> None:
        self._broker.queues.pop(self._name, None)
        self._loop.cancel()
        await asyncio.gather(self._loop, return_exceptions=True)


class MemoryBus:
    """One client of a :class:`MemoryBroker`; satisfies :class:`~edgeback_core.bus.port.Bus`.

    ``user_id`` is the client's identity, the broker user of an AMQP connection: every
    message it publishes and every RPC it calls carries it, and nothing it sends can
    carry another one.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        topology: Topology,
        tracker: InFlightTracker | None = None,
        *,
        user_id: str = DEFAULT_USER,
    ) -> None:
        self.broker = broker
        self.user_id = user_id
        self.topology = topology
        self._tracker = tracker or NullTracker()
        self._consumers: list[_MemoryConsumer | _MemoryLive] = []
        self._ids = itertools.count()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        broker: MemoryBroker,
        topology: Topology,
        tracker: InFlightTracker | None = None,
        *,
        user_id: str = DEFAULT_USER,
    ) -> AsyncIterator[MemoryBus]:
        bus = cls(broker, topology, tracker, user_id=user_id)
        try:
            yield bus
        finally:
            await bus.close()

    async def close(self) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.kill()
        await self.broker.rpc.close_owner(self)

    async def publish(
        self,
        exchange: ExchangeKind,
        routing_key: str,
        message: msgspec.Struct,
        *,
        message_id: str | None = None,
    ) -> None:
        body = encode(message)
        envelope = Envelope(
            message_id=message_id or uuid.uuid4().hex,
            routing_key=routing_key,
            user_id=self.user_id,
        )
        queues = self.broker.route(exchange, routing_key)
        if not queues and exchange == "commands":
            raise UnroutableError(f"no queue bound for command {routing_key!r}")
        for queue in queues:
            queue.put(_Stored(body=body, envelope=envelope))

    async def consume(
        self, spec: QueueSpec, handler: Handler[T], message_type: type[T]
    ) -> ConsumerHandle:
        name = self.topology.queue(spec)
        queue = self.broker.declare(name, spec)

        async def run(delivery: _MemoryDelivery) -> None:
            await run_delivery(
                delivery, handler, message_type, spec=spec, queue=name, tracker=self._tracker
            )

        consumer = _MemoryConsumer(self, queue, run, name)
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
        spec = live_queue(uuid.uuid4().hex[:16], bindings)
        name = self.topology.queue(spec)
        queue = self.broker.declare(name, spec)
        queue.ready = deque(maxlen=backlog)  # the oldest dropped, as x-overflow drop-head

        async def run(stored: _Stored) -> None:
            await run_live(stored.body, stored.envelope, handler, message_type, queue=name)

        live = _MemoryLive(self.broker, name, queue, run)
        self._consumers.append(live)
        return live

    async def declare(self, spec: QueueSpec) -> None:
        """Create ``spec``'s queue without consuming (messages wait in it)."""
        self.broker.declare(self.topology.queue(spec), spec)

    async def serve_rpc(
        self, name: str, handler: RpcHandler[Req], request_type: type[Req]
    ) -> ConsumerHandle:
        return self.broker.rpc.serve(self, name, handler, request_type, self._tracker)

    async def call(
        self,
        name: str,
        request: msgspec.Struct,
        response_type: type[Resp],
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline also sets the request's expiration
    ) -> Resp:
        return await self.broker.rpc.call(
            name, request, response_type, timeout=timeout, caller=self.user_id
        )

    async def dead_letters(self, spec: QueueSpec) -> list[bytes]:
        queue = self.broker.declare(self.topology.queue(spec), spec)
        bodies, queue.dead = queue.dead, []
        return bodies
