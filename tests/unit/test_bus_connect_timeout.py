"""A broker that accepts the TCP connection and then says nothing: ``AmqpBus.open``
fails with ``UnavailableError`` after its bound, and the process can still stop
(aio-pika's reconnect task, left running by a cancelled connect, used to keep
``asyncio.run`` from ever returning)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edgeback_core.bus import amqp_wire
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import Topology
from edgeback_core.errors import UnavailableError


async def _open_against_a_silent_broker() -> str:
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answers the AMQP header

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AmqpBus.open(
            f"amqp://guest:guest@127.0.0.1:{port}/", Topology(prefix="t."), reconnect_interval=0.2
        ):
            return "opened"
    except UnavailableError as exc:
        return exc.code
    finally:
        for writer in held:
            writer.close()
        server.close()


def test_a_silent_broker_fails_the_open_and_lets_the_process_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(amqp_wire, "BROKER_OP_TIMEOUT_S", 1.0)
    result: list[str] = []
    runner = threading.Thread(
        target=lambda: result.append(asyncio.run(_open_against_a_silent_broker())), daemon=True
    )
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "asyncio.run did not return: a reconnect task outlived it"
    assert result == ["unavailable"]
