"""Drive the shared RabbitMQ from tests: close one named connection, restart the app.

Uses ``rabbitmqctl`` (the broker runs on this machine). Connections are found by the
``connection_name`` client property that ``AmqpBus.open(name=...)`` sets, so a test
only ever closes its own connection on a broker other engineers share.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import QueueSpec, Topology
from edgeback_core.messages import Message


async def rabbitmqctl(*args: str, limit: float = 60.0) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl is not on PATH: these tests drive the local broker")
    proc = await asyncio.create_subprocess_exec(
        exe, "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(limit):
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode()}{out.decode()}")
    return out.decode()


async def connection_pids(name: str) -> list[str]:
    """Broker-side pids of the connections whose client named itself ``name``.

    The table output (not ``--formatter json``) because only it prints pids in the
    ``<rabbit@host.N.N.N>`` form ``close_connection`` accepts.
    """
    listing = await rabbitmqctl("list_connections", "pid", "client_properties")
    marker = f'{{"connection_name","{name}"}}'
    pids = []
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        if marker in props:
            pids.append(pid)
    return pids


async def close_connection(name: str) -> None:
    """Force-close this test's connection from the broker side."""
    pids = await connection_pids(name)
    assert len(pids) == 1, f"expected one connection named {name!r}, found {pids}"
    await rabbitmqctl("close_connection", pids[0], "edgeback resilience test")


async def wait_for_connection(name: str, limit: float = 30.0) -> float:
    """Seconds until the broker lists a connection named ``name`` again."""
    started = time.monotonic()
    async with asyncio.timeout(limit):
        while not await connection_pids(name):  # noqa: ASYNC110 - polling the broker
            await asyncio.sleep(0.1)
    return time.monotonic() - started


async def eventually(check: Callable[[], bool], limit: float = 30.0) -> None:
    async with asyncio.timeout(limit):
        while not check():  # noqa: ASYNC110 - polling state we do not own
            await asyncio.sleep(0.05)


class BusFactory:
    """Opens named buses under one per-test prefix and remembers the queues to delete."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
        self.specs: list[QueueSpec] = []

    def spec(self, name: str, **kwargs: Any) -> QueueSpec:
        spec = QueueSpec(name=name, **kwargs)
        self.specs.append(spec)
        return spec

    def name(self, role: str) -> str:
        return f"{self.topology.prefix}{role}"

    @asynccontextmanager
    async def open(self, role: str, **kwargs: Any) -> AsyncIterator[AmqpBus]:
        async with AmqpBus.open(self.url, self.topology, name=self.name(role), **kwargs) as bus:
            yield bus

    async def clean_up(self) -> None:
        async with AmqpBus.open(self.url, self.topology) as bus:
            await bus.delete_topology(self.specs)


class Job(Message, frozen=True, kw_only=True):
    """The work message of the resilience tests."""

    text: str
