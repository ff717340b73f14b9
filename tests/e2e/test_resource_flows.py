"""Resource flows with the catalog and a worker as separate processes and the emulator
as a third: the worker's heartbeat registers its backup host, an admin activates it,
a platform with wrong keys is refused and with the right ones stored, a Ceph storage
is checked on the real cluster, the platform is browsed; once the worker is gone the
host is reported unreachable. No process ever logs the Secret Key."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.e2e.services import forget_deployment
from tests.support.emulator_process import EmulatorProcess, emulator_process
from tests.support.processes import ServiceProcess, free_port

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import Topology
from edgeback_core.errors import EdgebackError, NotFoundError
from edgeback_core.messages import catalog as m
from edgeback_core.messages import catalog_rpc as names
from edgeback_core.messages import worker as w

ADMIN = m.ActorRef()  # the tests' broker user (EDGEBACK_CATALOG_TEST_USERS)
T = 30.0


@pytest.fixture
def stack(
    amqp_url: str, mongo_url: str, ceph_conf: str, tmp_path: Path
) -> Iterator[tuple[str, str, dict[str, ServiceProcess], EmulatorProcess]]:
    prefix, host = f"e2e-{uuid.uuid4().hex[:8]}.", f"e2e-bk-{uuid.uuid4().hex[:6]}"
    database = f"e2e_{prefix.strip('.').replace('-', '_')}"
    common = {
        "EDGEBACK_AMQP_URL": amqp_url,
        "EDGEBACK_BUS_PREFIX": prefix,
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_GRACE_S": "5",
    }
    own = {
        "catalog": {
            "EDGEBACK_MONGO_URL": mongo_url,
            "EDGEBACK_CATALOG_DATABASE": database,
            "EDGEBACK_CATALOG_TEST_USERS": "edgeback-test",
            "EDGEBACK_CATALOG_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        },
        "worker": {
            "EDGEBACK_WORKER_HOST_ID": host,
            "EDGEBACK_WORKER_HEARTBEAT_S": "0.3",
            "EDGEBACK_WORKER_DATA_DIR": str(tmp_path),
        },
    }
    procs: dict[str, ServiceProcess] = {}
    for name, settings in own.items():
        port = free_port()
        env = settings | common | {f"EDGEBACK_{name.upper()}_HEALTH_PORT": str(port)}
        procs[name] = ServiceProcess(name, port, env, tmp_path / f"{name}.log")
    with emulator_process(ceph_conf, tmp_path / "cloud", vms=6) as cloud:
        try:
            for proc in procs.values():
                proc.start()
            yield prefix, host, procs, cloud
        finally:
            for proc in procs.values():
                proc.kill()
            forget_deployment(amqp_url, mongo_url, prefix=prefix, database=database)


async def code_of(bus: AmqpBus, name: str, req: msgspec.Struct) -> str:
    with pytest.raises(EdgebackError) as err:
        await bus.call(name, req, m.Done, timeout=T)
    return err.value.code


async def registered(bus: AmqpBus, host: str) -> m.HostInfo:
    """The host as the catalog knows it, once a heartbeat has registered it."""
    async with asyncio.timeout(T):
        while True:
            try:
                req = m.HostGet(actor=ADMIN, host_id=host)
                return await bus.call(names.HOST_GET, req, m.HostInfo, timeout=T)
            except NotFoundError:
                await asyncio.sleep(0.1)


def platform(host: str, cloud: EmulatorProcess, **kw: Any) -> m.PlatformRegister:
    fields: dict[str, Any] = {
        "actor": ADMIN,
        "name": "edge-e2e",
        "address": "127.0.0.1",
        "port": cloud.port,
        "ssl": False,
        "access_key": cloud.access_key,
        "secret_key": cloud.secret_key,
        "default_host_id": host,
    } | kw
    return msgspec.convert(fields, m.PlatformRegister)


async def test_register_check_browse_through_the_worker_process(
    stack: tuple[str, str, dict[str, ServiceProcess], EmulatorProcess],
    amqp_url: str,
    ceph_conf: str,
) -> None:
    prefix, host, procs, cloud = stack
    for proc in procs.values():
        await proc.wait_healthy()
    async with AmqpBus.open(amqp_url, Topology(prefix=prefix)) as bus:
        seen = await registered(bus, host)
        assert not seen.active and seen.online
        refused = await code_of(bus, names.PLATFORM_REGISTER, platform(host, cloud))
        assert refused == "host_not_active"
        await bus.call(
            names.HOST_ACTIVATE,
            m.HostActivate(actor=ADMIN, host_id=host),
            m.HostInfo,
            timeout=T,
        )

        wrong = platform(host, cloud, secret_key="sk-wrong-wrong-wrong")
        assert await code_of(bus, names.PLATFORM_REGISTER, wrong) == "platform_auth_failed"
        info = await bus.call(
            names.PLATFORM_REGISTER, platform(host, cloud), m.PlatformInfo, timeout=T
        )

        missing = m.StorageAdd(
            actor=ADMIN,
            platform_id=info.id,
            name="ceph",
            host_id=host,
            pool="nope-e2e",
            conf_path=ceph_conf,
        )
        assert await code_of(bus, names.STORAGE_ADD, missing) == "rbd_pool_not_found"
        good = m.StorageAdd(
            actor=ADMIN,
            platform_id=info.id,
            name="ceph",
            host_id=host,
            pool="rbd",
            conf_path=ceph_conf,
        )
        await bus.call(names.STORAGE_ADD, good, m.StorageInfo, timeout=T)

        browse = m.PlatformBrowse(actor=ADMIN, platform_id=info.id, keyword="web")
        found = await bus.call(names.PLATFORM_BROWSE, browse, w.PlatformInventory, timeout=T)
        assert [vm.name for h in found.hosts for vm in h.vms] == ["web-01"]

        assert procs["worker"].terminate(10.0) == 0
        started = time.monotonic()
        gone = await code_of(bus, names.PLATFORM_REGISTER, platform(host, cloud, name="edge-2"))
        assert gone == "backup_host_unreachable"
        assert time.monotonic() - started < 5.0

    for proc in procs.values():
        assert cloud.secret_key not in proc.log_text()
        assert "sk-wrong-wrong-wrong" not in proc.log_text()
