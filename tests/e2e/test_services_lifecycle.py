"""The five services as separate processes: healthy, reachable over the bus, clean SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.services import forget_deployment
from tests.support.processes import ServiceProcess, free_port

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.port import Envelope
from edgeback_core.bus.topology import HOST_HEARTBEAT, QueueSpec, Topology
from edgeback_core.messages.catalog import HostHeartbeat
from edgeback_core.messages.health import Ping, Pong, ping_rpc

GRACE_S = 10.0
SERVICES = ("catalog", "dedup", "api", "scheduler", "worker")
HEARTBEATS = QueueSpec(name="e2e.heartbeats", exchange="events", bindings=(HOST_HEARTBEAT,))


async def next_heartbeat(bus: AmqpBus) -> HostHeartbeat:
    got: asyncio.Future[HostHeartbeat] = asyncio.get_running_loop().create_future()

    async def on_beat(beat: HostHeartbeat, _envelope: Envelope) -> None:
        if not got.done():
            got.set_result(beat)

    handle = await bus.consume(HEARTBEATS, on_beat, HostHeartbeat)
    try:
        return await asyncio.wait_for(got, 10)
    finally:
        await handle.stop()


def service_env(
    name: str, amqp_url: str, mongo_url: str, prefix: str, tmp_path: Path
) -> dict[str, str]:
    port = free_port()
    env = {
        "EDGEBACK_AMQP_URL": amqp_url,
        "EDGEBACK_BUS_PREFIX": prefix,
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_GRACE_S": str(GRACE_S / 2),
        f"EDGEBACK_{name.upper()}_HEALTH_PORT": str(port),
        "EDGEBACK_WORKER_HOST_ID": "e2e-host",
        "EDGEBACK_WORKER_HEARTBEAT_S": "0.3",
        "EDGEBACK_WORKER_DATA_DIR": str(tmp_path),
        "EDGEBACK_DEDUP_DATA_DIR": str(tmp_path / "pools"),
        "EDGEBACK_DEDUP_TOKEN": "e2e-token-0123456789",
        "EDGEBACK_DEDUP_PORT": "0",
        "EDGEBACK_MONGO_URL": mongo_url,
        "EDGEBACK_CATALOG_TEST_USERS": "edgeback-test",
        "EDGEBACK_CATALOG_DATABASE": f"e2e_{prefix.strip('.').replace('-', '_')}",
        "EDGEBACK_CATALOG_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    return env


@pytest.fixture
def fleet(
    amqp_url: str, mongo_url: str, tmp_path: Path
) -> Iterator[tuple[str, list[ServiceProcess]]]:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}."
    procs = []
    for name in SERVICES:
        env = service_env(name, amqp_url, mongo_url, prefix, tmp_path)
        port = int(env[f"EDGEBACK_{name.upper()}_HEALTH_PORT"])
        procs.append(ServiceProcess(name, port, env, tmp_path / f"{name}.log"))
    try:
        for proc in procs:
            proc.start()
        yield prefix, procs
    finally:
        for proc in procs:
            proc.kill()
        database = procs[0].env["EDGEBACK_CATALOG_DATABASE"]
        forget_deployment(amqp_url, mongo_url, prefix=prefix, database=database)


async def test_services_start_answer_health_and_stop_cleanly_on_sigterm(fleet, amqp_url):
    prefix, procs = fleet
    for proc in procs:
        health = await proc.wait_healthy()
        assert health["status"] == "ok"
        if proc.name == "dedup":  # the storage node does not use the bus
            assert health["checks"] == {"data_dir": True}
        else:
            assert health["checks"]["bus"] is True
        if proc.name == "catalog":
            assert health["checks"]["catalog_db"] is True

    async with AmqpBus.open(amqp_url, Topology(prefix=prefix)) as bus:
        for proc in procs:
            if proc.name == "dedup":
                continue
            pong = await bus.call(ping_rpc(proc.name), Ping(nonce=proc.name), Pong, timeout=5)
            assert pong.service == proc.name
            assert pong.nonce == proc.name
        beat = await next_heartbeat(bus)
        assert beat.host_id == "e2e-host"
        assert beat.capacity_bytes > 0
        await bus.delete_topology([HEARTBEATS])

    for proc in procs:
        assert proc.terminate(GRACE_S) == 0, proc.log_text()
        stopped = [e for e in proc.log_events() if e.get("event") == "service.stopped"]
        assert len(stopped) == 1, proc.log_text()
        assert stopped[0]["status"] == "stopped"
        assert stopped[0]["drained"] is True


async def test_service_refuses_bad_settings_with_every_problem_listed(tmp_path):
    env = {"EDGEBACK_AMQP_URL": "", "EDGEBACK_GRACE_S": "soon", "EDGEBACK_WORKER_HEALTH_PORT": "x"}
    proc = ServiceProcess("worker", 0, env, tmp_path / "worker.log")
    proc.start()
    assert proc.proc is not None
    code = proc.proc.wait(timeout=30)
    assert code == 2  # the README: a bad or missing setting stops the process with exit 2
    text = proc.log_text()
    assert "EDGEBACK_GRACE_S" in text
    assert "EDGEBACK_AMQP_URL: required" in text
    assert "EDGEBACK_WORKER_HEALTH_PORT" in text
    assert "Traceback" not in text
