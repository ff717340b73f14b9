"""The AMQP bus across a lost connection: the broker closes THIS test's connection
(found by its connection name) and the bus must come back without losing anything:
the message in flight is redelivered and handled, consumers resume, publishing and
RPC (server and caller, incl. the direct reply-to consumer) work again, and a call in
flight fails fast with ``UnavailableError`` instead of waiting for its timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
import aiormq
import pytest
from tests.integration.broker_control import (
    BusFactory,
    Job,
    close_connection,
    eventually,
    wait_for_connection,
)

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Envelope
from edgeback_core.errors import TransientError, UnavailableError, UnroutableError
from edgeback_core.messages import Ping, Pong


async def pong(ping: Ping) -> Pong:
    if ping.nonce == "slow":
        await asyncio.sleep(20)
    return Pong(service="resilience", nonce=ping.nonce)


async def test_message_in_flight_is_redelivered_and_consumer_resumes(buses: BusFactory) -> None:
    spec = buses.spec("svc.work", exchange="commands", bindings=("work.#",), prefetch=1)
    seen: list[tuple[str, Envelope]] = []
    first_started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(job: Job, envelope: Envelope) -> None:
        seen.append((job.text, envelope))
        if len(seen) == 1:
            first_started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    async with buses.open("worker") as bus:
        await bus.consume(spec, handler, Job)
        await bus.publish("commands", "work.a", Job(text="in flight"), message_id="m-1")
        await asyncio.wait_for(first_started.wait(), 10)
        lost_at = time.monotonic()
        await close_connection(buses.name("worker"))
        await eventually(lambda: len(seen) >= 2)
        redelivered_after = time.monotonic() - lost_at
        assert cancelled.is_set(), "the handler whose ack can no longer land is stopped"
        await bus.publish("commands", "work.b", Job(text="after"), message_id="m-2")
        await eventually(lambda: len(seen) >= 3)
        await asyncio.sleep(0.3)
    texts = [text for text, _ in seen]
    assert texts == ["in flight", "in flight", "after"]
    again = seen[1][1]
    assert (again.message_id, again.redelivered) == ("m-1", True)
    assert redelivered_after < 10, f"redelivered only after {redelivered_after:.1f}s"
    print(f"\nredelivered {redelivered_after:.2f}s after the connection was closed")


async def test_rpc_server_and_caller_work_after_reconnect(buses: BusFactory) -> None:
    async with buses.open("server") as server, buses.open("caller") as caller:
        await server.serve_rpc("health.ping", pong, Ping)
        assert (await caller.call("health.ping", Ping(nonce="1"), Pong, timeout=5)).nonce == "1"
        for role in ("server", "caller"):
            await close_connection(buses.name(role))
        started = time.monotonic()
        for role in ("server", "caller"):
            await wait_for_connection(buses.name(role))
        reply = await _call_until_answered(caller, "2")
        print(f"\nRPC answered again {time.monotonic() - started:.2f}s after both were closed")
        assert reply.nonce == "2"
        replies = await asyncio.gather(
            *(caller.call("health.ping", Ping(nonce=str(n)), Pong, timeout=5) for n in range(5))
        )
        assert [r.nonce for r in replies] == [str(n) for n in range(5)]


async def _call_until_answered(caller: AmqpBus, nonce: str) -> Pong:
    """The server's queue is re-declared on its own schedule: until then the call is
    unroutable or unavailable, never answered wrongly."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await caller.call("health.ping", Ping(nonce=nonce), Pong, timeout=5)
            except (TransientError, UnroutableError):
                await asyncio.sleep(0.2)


async def test_call_in_flight_fails_fast_when_connection_is_lost(buses: BusFactory) -> None:
    async with buses.open("server") as server, buses.open("caller") as caller:
        await server.serve_rpc("slow.ping", pong, Ping)
        call = asyncio.create_task(caller.call("slow.ping", Ping(nonce="slow"), Pong, timeout=20))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await close_connection(buses.name("caller"))
        with pytest.raises(UnavailableError):
            await call
        failed_after = time.monotonic() - started
        assert failed_after < 3, f"the call waited {failed_after:.1f}s"
        print(f"\nin-flight call failed {failed_after:.2f}s after the close was requested")
        await wait_for_connection(buses.name("caller"))
        await server.serve_rpc("fast.ping", pong, Ping)
        reply = await caller.call("fast.ping", Ping(nonce="back"), Pong, timeout=10)
        assert reply.nonce == "back"


async def test_publish_during_outage_is_delivered_or_raises(buses: BusFactory) -> None:
    spec = buses.spec("svc.sink", exchange="commands", bindings=("sink.#",))
    seen: list[str] = []

    async def handler(job: Job, envelope: Envelope) -> None:
        seen.append(envelope.message_id)

    async with buses.open("consumer") as sink, buses.open("publisher") as bus:
        await sink.consume(spec, handler, Job)
        closing = asyncio.create_task(close_connection(buses.name("publisher")))
        published: list[str] = []
        for n in range(40):
            try:
                await bus.publish("commands", "sink.x", Job(text=str(n)), message_id=f"p-{n}")
                published.append(f"p-{n}")
            except TransientError:
                pass
            await asyncio.sleep(0.05)
        await closing
        await eventually(lambda: set(published) <= set(seen))
    assert published, "some publishes went through"
    assert set(seen) <= {f"p-{n}" for n in range(40)}


async def test_publish_waits_bounded_time_then_raises(buses: BusFactory) -> None:
    """With a reconnect slower than ``reconnect_wait``, the publish gives up loudly."""
    spec = buses.spec("svc.bounded", exchange="commands", bindings=("bounded.#",))
    async with buses.open("slow", reconnect_wait=0.5, reconnect_interval=5) as bus:
        await bus.consume(spec, _ignore, Job)
        await close_connection(buses.name("slow"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await bus.publish("commands", "bounded.x", Job(text="x"))
        assert 0.4 < time.monotonic() - started < 2
        await wait_for_connection(buses.name("slow"))
        await bus.publish("commands", "bounded.x", Job(text="y"))


async def _ignore(job: Job, envelope: Envelope) -> None:
    return None


async def test_a_consumer_whose_queue_is_deleted_declares_it_again(buses: BusFactory) -> None:
    """An operator (or a clean-up) deletes a work queue: the broker cancels its consumer;
    the bus recovers, declares the queue again and consumes what is published next."""
    spec = buses.spec("svc.deleted", exchange="commands", bindings=("gone.#",), prefetch=1)
    seen: list[str] = []

    async def handler(job: Job, envelope: Envelope) -> None:
        seen.append(job.text)

    async with buses.open("worker") as bus:
        await bus.consume(spec, handler, Job)
        await bus.publish("commands", "gone.a", Job(text="before"))
        await eventually(lambda: seen == ["before"])
        async with await aio_pika.connect(buses.url) as operator:
            await (await operator.channel()).queue_delete(buses.topology.queue(spec))
        sent = False
        async with asyncio.timeout(30):
            while not seen[1:]:  # the commands are unroutable until the queue is back
                try:
                    if not sent:
                        await bus.publish("commands", "gone.a", Job(text="after"))
                        sent = True
                except UnroutableError:
                    pass
                await asyncio.sleep(0.2)
    assert seen == ["before", "after"]


async def test_delete_topology_goes_on_across_a_lost_connection(
    buses: BusFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker closes the connection under a clean-up's delete (RabbitMQ 3.10 does,
    with INTERNAL_ERROR, when a quorum queue's delete times out inside it): the
    connection comes back and every queue and exchange is deleted all the same."""
    specs = [
        buses.spec(f"svc.gone{n}", exchange="commands", bindings=(f"g{n}.#",)) for n in range(2)
    ]
    async with buses.open("cleaner", reconnect_wait=30) as bus:
        for spec in specs:
            await bus.declare(spec)
        channel = bus._channel  # the test closes the connection under it
        real_delete, closed = channel.queue_delete, asyncio.Event()

        async def delete_after_close(name: str, *args: Any, **kwargs: Any) -> Any:
            if not closed.is_set():  # what CI met: the broker closes the connection
                closed.set()  # under this delete and the driver raises its code
                await close_connection(buses.name("cleaner"))
                raise aiormq.exceptions.ConnectionInternalError("INTERNAL_ERROR")
            return await real_delete(name, *args, **kwargs)

        monkeypatch.setattr(channel, "queue_delete", delete_after_close)
        await bus.delete_topology(specs)
    top = buses.topology
    names = [n for s in specs for n in (top.queue(s), top.dlq(s), *top.retry_queues(s).values())]
    async with await aio_pika.connect(buses.url) as operator:
        for name in [*names, top.exchange("commands"), top.exchange("events")]:
            probe = await operator.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
                if name in names:
                    await probe.declare_queue(name, passive=True)
                else:
                    await probe.declare_exchange(name, passive=True)
