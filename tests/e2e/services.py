"""End-to-end tests' service processes: made on a free health port, stopped as a
deployment stops them, and what they left on the broker and the catalog DB server
cleaned up after (the processes themselves: ``tests.support.processes``)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pymongo
from tests.support.processes import ServiceProcess, free_port

from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import QUEUES, QueueSpec, Topology, worker_runs
from edgeback_core.ids import BackupHostId


def forget_deployment(
    amqp_url: str,
    mongo_url: str,
    *,
    prefix: str,
    database: str,
    queues: Sequence[QueueSpec] = (),
) -> None:
    """Remove what a test's services left on the shared broker and catalog DB server.

    The services' durable queues (every fixed queue of the topology, and ``queues``,
    e.g. a backup host's run queue) outlive them; the catalog's database too. Called from fixture
    teardown, outside any running event loop.
    """

    async def delete_queues() -> None:
        # bounded: a stalled broker fails the teardown instead of holding the test run
        async with asyncio.timeout(120), AmqpBus.open(amqp_url, Topology(prefix=prefix)) as bus:
            await bus.delete_topology([*QUEUES, *queues])

    asyncio.run(delete_queues())
    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(mongo_url) as client:
        client.drop_database(database)


def service_process(
    name: str, tmp_path: Path, env: dict[str, str], label: str = ""
) -> ServiceProcess:
    """``python -m edgeback_<name>`` on a free health port, logging to ``tmp_path``
    (not started)."""
    port = free_port()
    env = env | {f"EDGEBACK_{name.upper()}_HEALTH_PORT": str(port)}
    return ServiceProcess(name, port, env, tmp_path / f"{name}{label}.log")


def stop_service(service: ServiceProcess) -> None:
    """SIGTERM, as a deployment stops its services; one that does not stop is killed
    (how services stop is ``test_services_lifecycle``'s subject, not the callers')."""
    try:
        service.terminate(within_s=15)
    except AssertionError as exc:  # killed after all
        print(exc)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostServices:
    """A catalog process and worker processes of one backup host, started."""

    catalog: ServiceProcess
    workers: list[ServiceProcess]
    catalog_env: dict[str, str]
    """The catalog's settings (to start another catalog on the same database)."""

    def worker(self, worker_id: str) -> ServiceProcess:
        (found,) = [w for w in self.workers if w.env["EDGEBACK_WORKER_WORKER_ID"] == worker_id]
        return found


def start_host_services(
    stack: ExitStack, tmp_path: Path, *, amqp_url: str, mongo_url: str, prefix: str,
    database: str, host: str, pool_dir: Path, worker_ids: Sequence[str],
    worker_env: Mapping[str, str] | None = None,
) -> HostServices:  # fmt: skip
    """Start the catalog (on ``database``) and a worker of ``host`` per id (settings
    ``worker_env`` added), all under ``prefix``; stopped with ``stack``, which also
    forgets what they left on the broker and the catalog DB server."""
    common = {
        "EDGEBACK_AMQP_URL": amqp_url,
        "EDGEBACK_BUS_PREFIX": prefix,
        "EDGEBACK_LOG_JSON": "true",
        "EDGEBACK_GRACE_S": "5",
    }
    catalog_env = common | {
        "EDGEBACK_MONGO_URL": mongo_url,
        "EDGEBACK_CATALOG_DATABASE": database,
        "EDGEBACK_CATALOG_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "EDGEBACK_CATALOG_TEST_USERS": "edgeback-test",
    }
    workers_env = common | {
        "EDGEBACK_WORKER_HOST_ID": host,
        "EDGEBACK_WORKER_HEARTBEAT_S": "0.3",
        "EDGEBACK_WORKER_DATA_DIR": str(tmp_path),
        "EDGEBACK_WORKER_POOL_DIR": str(pool_dir),
        "EDGEBACK_WORKER_PROGRESS_INTERVAL_S": "0.5",
        **(worker_env or {}),
    }
    catalog = service_process("catalog", tmp_path, catalog_env)
    workers = [
        service_process("worker", tmp_path, workers_env | {"EDGEBACK_WORKER_WORKER_ID": x}, x)
        for x in worker_ids
    ]
    stack.callback(
        forget_deployment, amqp_url, mongo_url, prefix=prefix, database=database,
        queues=[worker_runs(BackupHostId(host))],
    )  # fmt: skip
    for service in (catalog, *workers):
        service.start()
        stack.callback(stop_service, service)
    return HostServices(catalog=catalog, workers=workers, catalog_env=catalog_env)
