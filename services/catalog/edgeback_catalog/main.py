"""Composition root of the catalog: settings → bus → catalog DB → RPCs and heartbeats;
platforms and storages are checked by the workers of their backup hosts over the bus."""

from __future__ import annotations

from datetime import timedelta

from edgeback_catalog.handlers import CatalogRpc, serve_catalog
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.probes import WorkerProbe
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_catalog.settings import CatalogSettings
from edgeback_core.bus.port import Bus
from edgeback_core.lifecycle import ServiceRuntime
from edgeback_core.service import serve

SERVICE = "catalog"


async def setup(runtime: ServiceRuntime, bus: Bus, settings: CatalogSettings) -> None:
    db = await runtime.stack.enter_async_context(
        CatalogDb.open(settings.mongo_url, settings.database, timeout_ms=settings.mongo_timeout_ms)
    )
    runtime.health_checks["catalog_db"] = db.ping
    catalog = Catalog.build(
        db,
        SecretBox.from_setting(settings.master_key),
        offline_after=timedelta(seconds=settings.host_offline_after_s),
        probe=WorkerProbe(bus),
        restore_code_ttl=timedelta(seconds=settings.restore_code_ttl_s),
        events=bus,
    )
    for handle in await serve_catalog(bus, CatalogRpc(catalog, settings.identities())):
        runtime.on_stop_intake(handle.stop)
    await catalog.run_ends.announce_missed()
    await catalog.restore_ends.announce_missed()


def main() -> None:
    serve(SERVICE, CatalogSettings.load, setup)
