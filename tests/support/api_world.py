"""The API served in-process (aiohttp's test server on 127.0.0.1) against a real catalog
on the catalog DB, over RabbitMQ, with the first admin ``root`` bootstrapped: what the
API's integration tests and its fuzz run talk to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from tests.integration.conftest import TEST_IDENTITIES

from edgeback_api.app import build_app
from edgeback_api.routing import Api
from edgeback_api.session import bootstrap_admin
from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.probes import WorkerProbe
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import CATALOG_HEARTBEATS, Topology
from edgeback_core.settings import Secret

ADMIN = "root"


@dataclass
class World:
    client: TestClient[Any, Any]
    api: Api
    database: str
    """The catalog's database on the catalog DB (dropped afterwards)."""

    async def login(self, name: str, password: str) -> str:
        resp = await self.client.post(
            "/api/v1/auth/login", json={"name": name, "password": password}
        )
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])


@asynccontextmanager
async def api_world(
    amqp_url: str, mongo_url: str, admin_password: str, *, probe: bool = False
) -> AsyncIterator[World]:
    """``probe``: the catalog checks resources from their backup host (``WorkerProbe``:
    serve the worker RPCs of the hosts used on ``World.api.bus``); else unchecked."""
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    topology = Topology(prefix=f"t-{uuid.uuid4().hex[:10]}.")
    database = f"test_api_{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(CatalogDb.open(mongo_url, database))
        stack.push_async_callback(db.drop)
        server = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
        catalog = Catalog.build(
            db,
            box,
            offline_after=timedelta(seconds=60),
            probe=WorkerProbe(server) if probe else None,
        )
        await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
        bus = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
        api = Api(bus=bus, rpc_timeout_s=10, slow_rpc_timeout_s=20, session_ttl_s=3600)
        assert await bootstrap_admin(api, ADMIN, admin_password)
        assert not await bootstrap_admin(api, "root2", admin_password)
        client = await stack.enter_async_context(TestClient(TestServer(build_app(api))))
        yield World(client=client, api=api, database=database)
        await server.delete_topology([CATALOG_HEARTBEATS])
