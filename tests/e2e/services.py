"""Run edgeback services as separate processes for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pymongo

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import CATALOG_HEARTBEATS, Topology


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """One ``python -m edgeback_<name>`` child with its log file and health port."""

    name: str
    health_port: int
    env: Mapping[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"edgeback_{self.name}"],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_healthy(self, within_s: float = 30.0) -> dict[str, object]:
        deadline = time.monotonic() + within_s
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        last: object = None
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited early:\n{self.log_text()}")
                try:
                    async with session.get(url) as resp:
                        body: dict[str, object] = await resp.json()
                        last = body
                        if resp.status == 200:
                            return body
                except aiohttp.ClientError as exc:
                    last = exc
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not healthy in {within_s}s: {last}\n{self.log_text()}")

    def terminate(self, within_s: float) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM for {within_s}s") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, object]]:
        events = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events


def forget_deployment(amqp_url: str, mongo_url: str, *, prefix: str, database: str) -> None:
    """Remove what a test's services left on the shared broker and catalog DB server.

    The services' durable queues (the catalog's heartbeat queue is the only one they
    declare so far) outlive them; the catalog's database too. Called from fixture
    teardown, outside any running event loop.
    """

    async def delete_queues() -> None:
        async with AmqpBus.open(amqp_url, Topology(prefix=prefix)) as bus:
            await bus.delete_topology([CATALOG_HEARTBEATS])

    asyncio.run(delete_queues())
    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(mongo_url) as client:
        client.drop_database(database)
