"""Settings of the catalog service (besides the common ones of every service).

``EDGEBACK_MONGO_URL``: the MongoDB (or catalog DB server) URL. Under
``EDGEBACK_CATALOG_``: ``MASTER_KEY`` (32 bytes, base64; seals platform keys at rest),
``DATABASE``, ``HOST_OFFLINE_AFTER_S`` (a backup host without heartbeat for this long
shows offline), ``MONGO_TIMEOUT_MS`` and ``RESTORE_CODE_TTL_S`` (how long a
restore's verification code stays valid, default 600).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from edgeback_catalog.secretbox import SecretBox
from edgeback_core.errors import ConfigError
from edgeback_core.settings import POSITIVE, EnvName, Rule, Secret, Settings


def _master_key_problem(master_key: Secret) -> str | None:
    """A bad key stops the start, with the reason."""
    try:
        SecretBox.from_setting(master_key)
    except ConfigError as exc:
        return exc.message
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogSettings(Settings):
    PREFIX: ClassVar[str] = "EDGEBACK_CATALOG_"

    mongo_url: Annotated[str, EnvName("EDGEBACK_MONGO_URL")]
    master_key: Annotated[Secret, Rule(_master_key_problem)]
    database: str = "edgeback"
    host_offline_after_s: Annotated[float, POSITIVE] = 90.0
    mongo_timeout_ms: Annotated[int, POSITIVE] = 5000
    restore_code_ttl_s: Annotated[float, POSITIVE] = 600.0
