"""Settings of the catalog service (besides the common ones of every service).

``EDGEBACK_MONGO_URL``: the MongoDB (or catalog DB server) URL. Under
``EDGEBACK_CATALOG_``: ``MASTER_KEY`` (32 bytes, base64; seals platform keys at rest),
``DATABASE``, ``HOST_OFFLINE_AFTER_S`` (a backup host without heartbeat for this long
shows offline) and ``MONGO_TIMEOUT_MS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgeback_core.errors import ConfigError
from edgeback_core.settings import Secret, load


@dataclass(frozen=True, slots=True, kw_only=True)
class MongoSettings:
    mongo_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSettings:
    master_key: Secret
    database: str = "edgeback"
    host_offline_after_s: float = 90.0
    mongo_timeout_ms: int = 5000


def load_catalog(environ: Mapping[str, str]) -> tuple[MongoSettings, CatalogSettings]:
    """Both groups, with every problem of both in one :class:`ConfigError`."""
    problems: list[str] = []
    mongo: MongoSettings | None = None
    catalog: CatalogSettings | None = None
    try:
        mongo = load(MongoSettings, environ)
    except ConfigError as exc:
        problems.extend(exc.details.get("problems", [exc.message]))
    try:
        catalog = load(CatalogSettings, environ, prefix="EDGEBACK_CATALOG_")
    except ConfigError as exc:
        problems.extend(exc.details.get("problems", [exc.message]))
    if mongo is None or catalog is None:
        raise ConfigError("invalid settings: " + "; ".join(problems), problems=problems)
    return mongo, catalog
