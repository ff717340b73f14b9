"""The AMQP bus across a broker restart (``rabbitmqctl stop_app`` / ``start_app``).

Durable quorum queues keep the commands published (and confirmed) before the
restart; the consumer reconnects and gets every one of them, the one it was working
on included; a publish attempted while the broker is down waits for it and lands.

The broker is shared with other engineers: this module restarts it once, keeps the
outage to the few seconds ``stop_app``/``start_app`` take, and always runs
``start_app`` even when the test fails.
"""

from __future__ import annotations

import asyncio
import time

from tests.integration.broker_control import BusFactory, Job, eventually, rabbitmqctl

from edgeback_core.bus.port import Envelope


async def restart_broker() -> tuple[float, float]:
    """Stop and start the RabbitMQ app; seconds each step took."""
    started = time.monotonic()
    try:
        await rabbitmqctl("stop_app")
    finally:
        stopped = time.monotonic()
        await rabbitmqctl("start_app")
    await rabbitmqctl("await_startup")
    return stopped - started, time.monotonic() - stopped


# Skipped from session 4 to 6: a `stop_app`/`start_app` left the shared dev broker
# accepting TCP but never finishing an AMQP handshake. The cause was RabbitMQ 3.10.8's
# at-least-once dead-letter workers (docs/bus.md, "Dead-letter strategy"); with the dev
# broker's queues at-most-once it passed 4 times in a row, the broker answering after.
async def test_queued_commands_survive_a_broker_restart(buses: BusFactory) -> None:
    spec = buses.spec("svc.durable", exchange="commands", bindings=("durable.#",), prefetch=1)
    release = asyncio.Event()
    seen: list[tuple[str, bool]] = []

    async def handler(job: Job, envelope: Envelope) -> None:
        seen.append((envelope.message_id, envelope.redelivered))
        await release.wait()

    async with (
        buses.open("consumer") as consumer,
        buses.open("publisher", reconnect_wait=60) as publisher,
    ):
        await consumer.consume(spec, handler, Job)
        for n in range(5):
            await publisher.publish("commands", "durable.x", Job(text=str(n)), message_id=f"m-{n}")
        await eventually(lambda: len(seen) == 1)
        # prefetch 1: m-0 is in its handler, m-1..m-4 wait in the quorum queue
        restart = asyncio.create_task(restart_broker())
        await asyncio.sleep(1.0)
        late = asyncio.create_task(
            publisher.publish("commands", "durable.x", Job(text="late"), message_id="m-late")
        )
        stop_s, start_s = await restart
        back = time.monotonic()
        release.set()
        await asyncio.wait_for(late, 60)
        expected = {f"m-{n}" for n in range(5)} | {"m-late"}
        await eventually(lambda: {mid for mid, _ in seen} >= expected, limit=60)
        resumed_s = time.monotonic() - back
        await asyncio.sleep(0.5)
    print(
        f"\nstop_app {stop_s:.1f}s, start_app {start_s:.1f}s, "
        f"all {len(expected)} commands handled {resumed_s:.1f}s after start_app"
    )
    ids = [mid for mid, _ in seen]
    assert set(ids) == expected
    assert ids.count("m-0") == 2, "the command in flight at the restart runs again"
    assert ("m-0", True) in seen
    assert all(ids.count(mid) == 1 for mid in expected - {"m-0"})
