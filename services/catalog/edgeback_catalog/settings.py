"""Settings of the catalog service (besides the common ones of every service).

``EDGEBACK_MONGO_URL``: the MongoDB (or catalog DB server) URL. Under
``EDGEBACK_CATALOG_``: ``MASTER_KEY`` (32 bytes, base64; seals platform keys at rest),
``DATABASE``, ``HOST_OFFLINE_AFTER_S`` (a backup host without heartbeat for this long
shows offline), ``MONGO_TIMEOUT_MS`` and ``RESTORE_CODE_TTL_S`` (how long a
restore's verification code stays valid, default 600).

Who calls (``docs/catalog.md``): ``API_USERS``, ``SCHEDULER_USERS``, ``CATALOG_USERS``
(comma-separated broker users; default ``api``, ``scheduler``, ``catalog``),
``HOST_USER_PREFIX`` (``host-``: user ``host-<id>`` is backup host ``<id>``) and
``TEST_USERS`` (empty; the test suites set ``edgeback-test``: such a user may do what
every service may, so never set it in production).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from edgeback_catalog.principals import Identities, parse_users
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
    api_users: str = "api"
    scheduler_users: str = "scheduler"
    catalog_users: str = "catalog"
    host_user_prefix: str = "host-"
    test_users: str = ""

    def identities(self) -> Identities:
        return Identities(
            api=parse_users(self.api_users),
            scheduler=parse_users(self.scheduler_users),
            catalog=parse_users(self.catalog_users),
            host_prefix=self.host_user_prefix,
            test=parse_users(self.test_users),
        )
