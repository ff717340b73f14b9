"""Composition root of the catalog: settings → catalog DB → bus → RPCs and heartbeats."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from datetime import timedelta

from edgeback_catalog.handlers import CatalogRpc, serve
from edgeback_catalog.mongo import CatalogDb
from edgeback_catalog.secretbox import SecretBox
from edgeback_catalog.service import Catalog
from edgeback_catalog.settings import CatalogSettings, MongoSettings, load_catalog
from edgeback_core.errors import ConfigError
from edgeback_core.lifecycle import ServiceRuntime, run_service
from edgeback_core.service import (
    CommonSettings,
    HealthSettings,
    exit_on_config_error,
    load_common,
    open_service_bus,
)
from edgeback_core.settings import process_environ

SERVICE = "catalog"


def main() -> None:
    try:
        common, health, mongo, settings = _settings(process_environ())
        box = SecretBox.from_setting(settings.master_key)
    except ConfigError as exc:
        exit_on_config_error(SERVICE, exc)

    async def setup(runtime: ServiceRuntime) -> None:
        db = await runtime.stack.enter_async_context(
            CatalogDb.open(mongo.mongo_url, settings.database, timeout_ms=settings.mongo_timeout_ms)
        )
        bus = await open_service_bus(runtime, common, health, extra_checks={"catalog_db": db.ping})
        catalog = Catalog.build(
            db, box, offline_after=timedelta(seconds=settings.host_offline_after_s)
        )
        for handle in await serve(bus, CatalogRpc(catalog)):
            runtime.on_stop_intake(handle.stop)

    sys.exit(asyncio.run(run_service(SERVICE, setup, grace_s=common.grace_s)))


def _settings(
    environ: Mapping[str, str],
) -> tuple[CommonSettings, HealthSettings, MongoSettings, CatalogSettings]:
    """Every settings group, with the problems of all of them in one error."""
    problems: list[str] = []
    try:
        common, health = load_common(environ, SERVICE)
    except ConfigError as exc:
        problems.extend(exc.details.get("problems", [exc.message]))
    try:
        mongo, settings = load_catalog(environ)
    except ConfigError as exc:
        problems.extend(exc.details.get("problems", [exc.message]))
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems), problems=problems)
    return common, health, mongo, settings
