"""The catalog in-process for tests that drive it over RabbitMQ: on a database of its
own (dropped afterwards), serving a topology, closed with the caller's exit stack."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

from tests.integration.conftest import TEST_IDENTITIES

from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_core.bus.amqp import AmqpBus
from edgeback_core.bus.topology import Topology
from edgeback_core.settings import Secret


async def served_catalog(
    stack: AsyncExitStack,
    topology: Topology,
    *,
    amqp_url: str,
    mongo_url: str,
    database: str,
    **build: Any,
) -> AmqpBus:
    """The catalog's own bus (what it serves and consumes on); ``build`` goes to
    ``Catalog.build`` (``events=True``: it publishes on that bus)."""
    box = SecretBox.from_setting(Secret(SecretBox.generate_key()))
    db = await stack.enter_async_context(
        CatalogDb.open(mongo_url, f"{database}_{uuid.uuid4().hex[:12]}")
    )
    stack.push_async_callback(db.drop)
    server = await stack.enter_async_context(AmqpBus.open(amqp_url, topology))
    if build.pop("events", False):
        build["events"] = server
    catalog = Catalog.build(db, box, **{"probe": None, **build})
    await serve_catalog(server, CatalogRpc(catalog, TEST_IDENTITIES))
    return server
