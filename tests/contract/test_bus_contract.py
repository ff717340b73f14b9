"""One behaviour for both buses: routing, confirms, ack/retry/dead-letter, RPC."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import msgspec
import pytest

from edgeback_core.bus.port import Envelope
from edgeback_core.bus.rpc import rpc_caller
from edgeback_core.bus.topology import RETRIES_HEADER
from edgeback_core.errors import (
    DeadlineExceededError,
    DeferredError,
    DiffMismatchError,
    EdgebackError,
    NotFoundError,
    TransientError,
    UnavailableError,
    UnroutableError,
)
from edgeback_core.lifecycle import InFlight
from edgeback_core.messages import Message, Ping, Pong


class Note(Message, frozen=True, kw_only=True):
    text: str


class Other(Message, frozen=True, kw_only=True):
    number: int


async def drain_dlq(bus, spec, count: int, limit: float = 10.0) -> list[bytes]:
    """Dead-lettering is asynchronous inside RabbitMQ and tells the client nothing: the
    one wait here that polls (the port reads a DLQ with basic.get, it does not consume)."""
    bodies: list[bytes] = []
    async with asyncio.timeout(limit):
        while len(bodies) < count:
            bodies += await bus.dead_letters(spec)
            await asyncio.sleep(0.05)
    return bodies


class Recorder:
    """A handler that records its deliveries and wakes whoever waits for them."""

    def __init__(self, fail: Callable[[int], Exception | None] = lambda n: None) -> None:
        self.seen: list[tuple[Note, Envelope]] = []
        self.fail = fail
        self._arrived = asyncio.Condition()

    async def __call__(self, note: Note, envelope: Envelope) -> None:
        self.seen.append((note, envelope))
        async with self._arrived:
            self._arrived.notify_all()
        error = self.fail(len(self.seen))
        if error is not None:
            raise error

    async def until(self, count: int, limit: float = 10.0) -> None:
        """Return once ``count`` deliveries have arrived."""
        async with asyncio.timeout(limit), self._arrived:
            await self._arrived.wait_for(lambda: len(self.seen) >= count)

    @property
    def texts(self) -> list[str]:
        return [n.text for n, _ in self.seen]


async def test_topic_routing_and_event_fan_out(world) -> None:
    one = world.spec("svc.one", bindings=("backup.event.*",))
    many = world.spec("svc.many", bindings=("backup.#",))
    first, second = Recorder(), Recorder()
    async with world.open() as bus:
        await bus.consume(one, first, Note)
        await bus.consume(many, second, Note)
        for key in ("backup.event.done", "backup.x.y.z", "other.event.done", "backup.event.end"):
            await bus.publish("events", key, Note(text=key))
        await first.until(2)
        await second.until(3)
    assert first.texts == ["backup.event.done", "backup.event.end"]
    assert second.texts == ["backup.event.done", "backup.x.y.z", "backup.event.end"]
    assert [e.routing_key for _, e in first.seen] == first.texts
    assert all(not e.redelivered and e.delivery_count == 0 for _, e in second.seen)


async def test_unroutable_command_raises_but_event_does_not(world) -> None:
    runs = world.spec("worker.runs.h1", exchange="commands", bindings=("run.h1",))
    seen = Recorder()
    async with world.open() as bus:
        await bus.consume(runs, seen, Note)
        with pytest.raises(UnroutableError):
            await bus.publish("commands", "run.h2", Note(text="lost"))
        await bus.publish("events", "nobody.event.listens", Note(text="dropped"))
        await bus.publish("commands", "run.h1", Note(text="taken"), message_id="m-1")
        await seen.until(1)
    assert seen.seen[0][1].message_id == "m-1"


async def test_poison_message_reaches_dlq_after_delivery_limit(world) -> None:
    spec = world.spec("svc.poison", delivery_limit=2)
    crash = Recorder(fail=lambda n: RuntimeError(f"bug #{n}"))
    async with world.open() as bus:
        await bus.consume(spec, crash, Note)
        await bus.publish("events", "x.event.y", Note(text="poison"))
        dead = await drain_dlq(bus, spec, 1)
    assert [msgspec.json.decode(b, type=Note).text for b in dead] == ["poison"]
    # the first delivery plus one per allowed redelivery
    assert [e.delivery_count for _, e in crash.seen] == [0, 1, 2]
    assert [e.redelivered for _, e in crash.seen] == [False, True, True]


async def test_transient_error_is_retried_then_succeeds(world) -> None:
    spec = world.spec("svc.flaky", retry_delays=(0.2,), max_retries=3)
    flaky = Recorder(fail=lambda n: UnavailableError("down") if n <= 2 else None)
    inflight = InFlight()
    async with world.open(tracker=inflight) as bus:
        await bus.consume(spec, flaky, Note)
        started = time.monotonic()
        await bus.publish("events", "x.event.flaky", Note(text="again"), message_id="m-2")
        await flaky.until(3)
        elapsed = time.monotonic() - started
        assert await inflight.wait_idle(10)  # the third delivery is settled: acked
        assert await bus.dead_letters(spec) == []
    assert len(flaky.seen) == 3
    assert elapsed >= 0.35
    envelopes = [e for _, e in flaky.seen]
    assert [e.headers.get("x-edgeback-retries", 0) for e in envelopes] == [0, 1, 2]
    assert {e.message_id for e in envelopes} == {"m-2"}
    assert {e.routing_key for e in envelopes} == {"x.event.flaky"}


async def test_transient_error_dead_letters_after_max_retries(world) -> None:
    spec = world.spec("svc.down", retry_delays=(0.1,), max_retries=1)
    down = Recorder(fail=lambda n: UnavailableError("still down"))
    async with world.open() as bus:
        await bus.consume(spec, down, Note)
        await bus.publish("events", "x.event.down", Note(text="give up"))
        dead = await drain_dlq(bus, spec, 1)
    assert len(down.seen) == 2
    assert msgspec.json.decode(dead[0], type=Note).text == "give up"


async def test_a_deferred_message_comes_back_past_max_retries_without_dead_lettering(
    world,
) -> None:
    spec = world.spec("svc.defer", retry_delays=(0.1,), max_retries=1)
    busy = Recorder(fail=lambda n: DeferredError("lease busy", delay_s=0.1) if n <= 4 else None)
    inflight = InFlight()
    async with world.open(tracker=inflight) as bus:
        await bus.consume(spec, busy, Note)
        await bus.publish("events", "x.event.defer", Note(text="later"), message_id="m-d")
        await busy.until(5)
        assert await inflight.wait_idle(10)  # the fifth delivery is settled: acked
        assert await bus.dead_letters(spec) == []
    envelopes = [e for _, e in busy.seen]
    assert [e.headers.get("x-edgeback-retries", 0) for e in envelopes] == [0] * 5
    assert {e.message_id for e in envelopes} == {"m-d"}
    assert {e.routing_key for e in envelopes} == {"x.event.defer"}


async def test_permanent_error_and_bad_body_go_straight_to_dlq(world) -> None:
    spec = world.spec("svc.strict")
    strict = Recorder(fail=lambda n: NotFoundError("no such job"))
    async with world.open() as bus:
        await bus.consume(spec, strict, Note)
        await bus.publish("events", "x.event.a", Note(text="missing"))
        await bus.publish("events", "x.event.b", Other(number=7))
        dead = await drain_dlq(bus, spec, 2)
    assert strict.texts == ["missing"]
    assert sorted(dead) == sorted([b'{"text":"missing"}', b'{"number":7}'])


async def test_killed_consumer_message_is_redelivered_to_another(world) -> None:
    spec = world.spec("svc.kill")
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(note: Note, envelope: Envelope) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    survivor = Recorder()
    async with world.open() as bus:
        await bus.consume(spec, stuck, Note)
        await bus.publish("events", "x.event.kill", Note(text="survive"), message_id="m-3")
        await asyncio.wait_for(started.wait(), 10)
    assert cancelled.is_set()
    async with world.open() as other:
        await other.consume(spec, survivor, Note)
        await survivor.until(1)
    note, envelope = survivor.seen[0]
    assert (note.text, envelope.message_id, envelope.redelivered) == ("survive", "m-3", True)
    assert envelope.delivery_count == 1


async def test_stop_lets_in_flight_handler_finish(world) -> None:
    spec = world.spec("svc.drain")
    started, release, done = asyncio.Event(), asyncio.Event(), Recorder()

    async def slow(note: Note, envelope: Envelope) -> None:
        started.set()
        await release.wait()
        await done(note, envelope)

    async with world.open() as bus:
        handle = await bus.consume(spec, slow, Note)
        await bus.publish("events", "x.event.drain", Note(text="finish me"))
        await asyncio.wait_for(started.wait(), 10)
        stopping = asyncio.create_task(handle.stop())
        finished, _ = await asyncio.wait({stopping}, timeout=0.1)
        assert not finished  # stop() waits for the handler in flight
        release.set()
        await asyncio.wait_for(stopping, 10)
    assert done.texts == ["finish me"]
    # had "finish me" not been acked, it would be delivered again before this marker
    again = Recorder()
    async with world.open() as bus:
        await bus.consume(spec, again, Note)
        await bus.publish("events", "x.event.after", Note(text="after"))
        await again.until(1)
    assert again.texts == ["after"]


async def pong(ping: Ping) -> Pong:
    if ping.nonce == "missing":
        raise NotFoundError("no such thing")
    if ping.nonce == "bug":
        raise ValueError("oops")
    if ping.nonce == "diverged":
        raise DiffMismatchError("diff missed a change", chunks=[3, 7], image="vm1-disk0")
    if ping.nonce == "slow":
        await asyncio.sleep(5)
    return Pong(service="test", nonce=ping.nonce)


async def test_rpc_round_trip_and_error_mapping(world) -> None:
    async with world.open() as server, world.open() as client:
        await server.serve_rpc("health.ping", pong, Ping)
        reply = await client.call("health.ping", Ping(nonce="n1"), Pong, timeout=5)
        assert reply == Pong(service="test", nonce="n1")
        with pytest.raises(NotFoundError, match="no such thing"):
            await client.call("health.ping", Ping(nonce="missing"), Pong, timeout=5)
        with pytest.raises(EdgebackError) as bug:
            await client.call("health.ping", Ping(nonce="bug"), Pong, timeout=5)
        assert type(bug.value) is EdgebackError
        assert bug.value.code == "internal_error"
        with pytest.raises(DiffMismatchError, match="diff missed a change") as diverged:
            await client.call("health.ping", Ping(nonce="diverged"), Pong, timeout=5)
        assert diverged.value.details == {"chunks": [3, 7], "image": "vm1-disk0"}


async def test_rpc_timeout_and_missing_server(world) -> None:
    async with world.open() as server, world.open() as client:
        await server.serve_rpc("slow.rpc", pong, Ping)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await client.call("slow.rpc", Ping(nonce="slow"), Pong, timeout=0.3)
        assert time.monotonic() - started < 2
        with pytest.raises(UnroutableError):
            await client.call("nobody.rpc", Ping(), Pong, timeout=2)


async def test_amqp_broker_down_is_unavailable() -> None:
    from edgeback_core.bus.amqp import AmqpBus  # noqa: PLC0415
    from edgeback_core.bus.topology import Topology  # noqa: PLC0415

    with pytest.raises(UnavailableError):
        async with AmqpBus.open("amqp://guest:guest@127.0.0.1:1/", Topology(prefix="t-x.")):
            pass


# --- identity: who published, as the broker saw it ------------------------------------
async def test_envelope_carries_the_publishers_broker_user(world) -> None:
    spec = world.spec("svc.identity", bindings=("who.#",))
    seen = Recorder()
    async with world.open() as bus, world.open_other() as other:
        await bus.consume(spec, seen, Note)
        await bus.publish("events", "who.event.mine", Note(text="mine"))
        await other.publish("events", "who.event.theirs", Note(text="theirs"))
        await seen.until(2)
    users = {note.text: envelope.user_id for note, envelope in seen.seen}
    assert users == {"mine": world.user, "theirs": world.other_user}
    assert world.user != world.other_user


async def test_retried_message_keeps_its_first_publishers_user(world) -> None:
    spec = world.spec("svc.identity_retry", bindings=("who.#",))
    seen = Recorder(fail=lambda n: TransientError("later") if n == 1 else None)
    async with world.open() as bus, world.open_other() as other:
        await bus.consume(spec, seen, Note)
        await other.publish("events", "who.event.retried", Note(text="x"))
        await seen.until(2)
    assert [e.user_id for _, e in seen.seen] == [world.other_user, world.other_user]
    assert seen.seen[1][1].headers.get(RETRIES_HEADER) == 1


async def test_rpc_handler_sees_the_callers_broker_user(world) -> None:
    async def whoami(ping: Ping) -> Pong:
        return Pong(service="who", instance=rpc_caller(), nonce=ping.nonce)

    rpc = f"whoami.{uuid.uuid4().hex[:6]}"
    async with world.open() as server, world.open_other() as other:
        await server.serve_rpc(rpc, whoami, Ping)
        mine = await server.call(rpc, Ping(nonce="a"), Pong, timeout=5)
        theirs = await other.call(rpc, Ping(nonce="b"), Pong, timeout=5)
    assert (mine.instance, theirs.instance) == (world.user, world.other_user)


async def test_a_live_subscription_follows_events_until_stopped(world) -> None:
    seen = Recorder(fail=lambda n: RuntimeError("a bug") if n == 1 else None)
    async with world.open() as bus:
        handle = await bus.subscribe(("backup.event.*",), seen, Note)
        await bus.publish("events", "backup.event.done", Note(text="a"))
        await bus.publish("events", "other.event.done", Note(text="skipped"))
        await bus.publish("events", "backup.event.end", Note(text="b"), message_id="m-b")
        await seen.until(2)  # the handler's failure on "a" dropped it, nothing stopped
        await handle.stop()
        later = Recorder()
        await bus.subscribe(("backup.#",), later, Note)
        await bus.publish("events", "backup.event.late", Note(text="late"))
        await later.until(1)
    assert seen.texts == ["a", "b"] and seen.seen[1][1].message_id == "m-b"
    assert later.texts == ["late"]
    assert seen.seen[1][1].user_id == world.user
