"""``edgeback pool register | list | show | edit | refresh | delete`` over a real API
(in-process, aiohttp's test server on loopback) with the catalog on the catalog DB over
RabbitMQ, checking pools through a backup host's worker RPCs against a real storage
node: capacity and free space come from the node, refusals exit 2 with their code and
register nothing, a job takes a registered pool by id (and keeps it from being deleted),
an operator lists only the pools of their backup hosts."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.api_world import ADMIN, World, api_world
from tests.support.storage_node import Node, make_pools, running_node, scoped_token

from edgeback_catalog.domain import Actor, Role
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.platforms import PlatformDraft
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_cli.main import EXIT_AUTH, EXIT_INPUT
from edgeback_core.bus.topology import HOST_HEARTBEAT
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog as m
from edgeback_core.settings import Secret
from edgeback_worker.handlers import serve_worker_rpcs
from edgeback_worker.settings import WorkerSettings

pytestmark = pytest.mark.integration
ADMIN_PASSWORD = "pools-admin-Lp3-" + uuid.uuid4().hex[:8]
OPERATOR_PASSWORD = "pools-oper-Vb8-" + uuid.uuid4().hex[:8]


class Cli:
    """``edgeback ARGS`` as a process, signed in with ``token``."""

    def __init__(self, world: World, tmp_path: Path, token: str) -> None:
        self._env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp_path),
            "EDGEBACK_API_TOKEN": token,
            "EDGEBACK_API_URL": str(world.client.make_url("/")),
        }

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from edgeback_cli.main import main; main()", *args,
            env=self._env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    make_pools(tmp_path / "srv")
    async with running_node(tmp_path / "srv") as running:
        yield running


@pytest.fixture
async def world(amqp_url: str, mongo_url: str) -> AsyncIterator[World]:
    async with api_world(amqp_url, mongo_url, ADMIN_PASSWORD, probe=True) as running:
        yield running


async def backup_host(world: World, admin: Cli, access: Path) -> str:
    """A backup host with a worker serving its RPCs, its pool access files in ``access``."""
    host = f"bk-{uuid.uuid4().hex[:8]}"
    await serve_worker_rpcs(world.api.bus, WorkerSettings(host_id=host, pool_dir=str(access)))
    await world.api.bus.publish(
        "events", HOST_HEARTBEAT, m.HostHeartbeat(host_id=host, hostname="bk")
    )
    for _ in range(100):
        code, _, _ = await admin("host", "activate", host)
        if code == 0:
            return host
        await asyncio.sleep(0.05)
    raise AssertionError("the heartbeat never registered the host")


async def operator(world: World, admin: Cli, tmp_path: Path, host: str) -> Cli:
    """An operator of group ``site-a``, which ``host`` is authorized to."""
    token = await world.login(ADMIN, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    c = world.client
    assert (await c.post("/api/v1/groups", json={"name": "site-a"}, headers=headers)).ok
    user = {"name": "op", "role": "operator", "groups": ["site-a"]}
    assert (await c.post("/api/v1/users", json=user, headers=headers)).ok
    password = {"password": OPERATOR_PASSWORD}
    assert (await c.put("/api/v1/users/op/password", json=password, headers=headers)).ok
    assert (await admin("host", "authorize", host, "--group", "site-a"))[0] == 0
    return Cli(world, tmp_path / "op", await world.login("op", OPERATOR_PASSWORD))


async def unchecked_platform(mongo_url: str, world: World, host: str) -> str:
    """A platform stored by the catalog's own rules, unchecked (no platform to reach here):
    what a job refers to."""
    draft = PlatformDraft(
        name="edge-1", address="127.0.0.1", port=30188, ssl=False, access_key="AKEDGE0001",
        secret_key="sk-edge-0001", default_host_id=BackupHostId(host),
    )  # fmt: skip
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    async with CatalogDb.open(mongo_url, world.database) as db:
        catalog = Catalog.build(db, box, probe=None)
        return (await catalog.platforms.register(Actor(name="root", role=Role.ADMIN), draft)).id


async def test_pool_commands_over_the_api(
    world: World, node: Node, tmp_path: Path, mongo_url: str
) -> None:
    admin = Cli(world, tmp_path, await world.login(ADMIN, ADMIN_PASSWORD))
    access = tmp_path / "access"
    access.mkdir()
    (access / "dd.token").write_text(scoped_token("host-dd"))
    (access / "std.token").write_text(scoped_token("host-dd"))
    host = await backup_host(world, admin, access)

    where = ("--node-url", node.url, "--host", host)
    code, out, err = await admin("pool", "register", "--name", "nope", *where)
    assert code == EXIT_INPUT and "[pool_access_missing]" in err, err
    code, out, err = await admin("pool", "register", "--name", "std", *where)
    assert code == EXIT_INPUT and "[pool_token_refused]" in err, err
    code, out, _ = await admin("pool", "list", "-o", "json")
    assert code == 0 and json.loads(out) == []

    code, out, err = await admin(
        "pool", "register", "--name", "dd", *where, "--description", "site A", "-o", "json"
    )
    assert code == 0, err
    pool = json.loads(out)
    assert (pool["kind"], pool["host_id"], pool["description"]) == ("dedup", host, "site A")
    assert 0 < pool["status"]["free_bytes"] <= pool["status"]["capacity_bytes"]
    code, out, _ = await admin("pool", "list")
    assert code == 0 and "CAPACITY" in out and "FREE" in out and "GiB" in out and pool["id"] in out
    code, out, _ = await admin("pool", "show", pool["id"])
    assert code == 0 and "description: site A" in out.replace("  ", " ")
    code, _, err = await admin("pool", "register", "--name", "dd", *where)
    assert code == EXIT_INPUT and "[already_exists]" in err

    code, out, _ = await admin("pool", "edit", pool["id"], "--description", "rack 2", "-o", "json")
    assert code == 0 and json.loads(out)["description"] == "rack 2"
    code, out, _ = await admin("pool", "refresh", pool["id"], "-o", "json")
    assert code == 0 and json.loads(out)["last_error"] is None

    platform = await unchecked_platform(mongo_url, world, host)
    job_flags = ("--name", "nightly", "--platform", platform, "--vm", "vm-1")
    code, _, err = await admin("job", "create", *job_flags, "--pool-id", pool["id"], "--pool", "x")
    assert code == EXIT_INPUT and "--pool-id names the node and the pool" in err
    code, out, err = await admin("job", "create", *job_flags, "--pool-id", pool["id"], "-o", "json")
    assert code == 0, err
    target = json.loads(out)["spec"]["target"]
    assert target == {"host_id": host, "pool": {"node_url": node.url, "name": "dd"}}
    code, _, err = await admin("pool", "delete", pool["id"])
    assert code == EXIT_INPUT and "[pool_in_use]" in err
    code, _, err = await admin("job", "delete", json.loads(out)["id"])
    assert code == 0, err

    op = await operator(world, admin, tmp_path, host)
    code, out, _ = await op("pool", "list", "-o", "json")
    assert code == 0 and [p["id"] for p in json.loads(out)] == [pool["id"]]
    code, _, err = await op("pool", "delete", pool["id"])
    assert code == EXIT_AUTH and "[permission_denied]" in err

    code, _, err = await admin("pool", "delete", pool["id"])
    assert code == 0 and "forgotten" in err
    code, _, err = await admin("pool", "show", pool["id"])
    assert code == EXIT_INPUT and "[not_found]" in err
