"""Settings of the catalog service (besides the common ones of every service).

``EDGEBACK_MONGO_URL``: the MongoDB (or catalog DB server) URL. Under
``EDGEBACK_CATALOG_``: ``MASTER_KEY`` (32 bytes, base64; seals platform keys at rest),
``DATABASE``, ``HOST_OFFLINE_AFTER_S`` (a backup host without heartbeat for this long
shows offline) and ``MONGO_TIMEOUT_MS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgeback_catalog.secretbox import SecretBox
from edgeback_core.settings import ProblemCollector, Secret, load


@dataclass(frozen=True, slots=True, kw_only=True)
class MongoSettings:
    mongo_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSettings:
    master_key: Secret
    database: str = "edgeback"
    host_offline_after_s: float = 90.0
    mongo_timeout_ms: int = 5000


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogConfig:
    """Everything the catalog reads besides the common settings."""

    mongo: MongoSettings
    catalog: CatalogSettings

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> CatalogConfig:
        """Both groups, with every problem of both in one :class:`ConfigError`."""
        problems = ProblemCollector()
        mongo = problems.collect(lambda: load(MongoSettings, environ))
        catalog = problems.collect(
            lambda: load(CatalogSettings, environ, prefix="EDGEBACK_CATALOG_")
        )
        problems.check()
        SecretBox.from_setting(catalog.master_key)  # a bad key stops the start, with the reason
        return cls(mongo=mongo, catalog=catalog)
