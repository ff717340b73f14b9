"""Signed calls to a platform made from this backup host: the registration check and
the inventory an admin browses.

Both use few retries and short timeouts (``WorkerSettings``): an admin waits for the
answer, and a wrong address must be refused in seconds, not after the fifteen retries
a backup run affords. The Secret Key arrives in the request and goes straight into the
client's :class:`Secret`; it is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from edgeback_core.errors import (
    EdgebackError,
    InvalidInputError,
    PlatformAuthError,
    PlatformUnreachableError,
)
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import worker as w
from edgeback_core.retry import RetryPolicy
from edgeback_core.settings import Secret
from edgeback_platform.client import EdgeCloudClient, PlatformEndpoint, Timeouts
from edgeback_platform.models import HypervisorId
from edgeback_worker.inventory import inventory_of

log = structlog.get_logger(__name__)
_MAX_BUDGET_S = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformProbe:
    """Answers ``worker.<host>.platform.check`` and ``.inventory``."""

    host_id: BackupHostId
    retries: int
    connect_timeout_s: float
    timeout_s: float
    ca_file: str | None = None
    """Trusted for a platform's https certificate, as in runs (``WorkerSettings.ca_file``)."""

    async def check(self, req: w.PlatformCheck) -> w.PlatformChecked:
        started = time.monotonic()
        client = self._client(req.access)
        try:
            async with self._within(client, req.budget_s):
                info = await client.check()
        except (PlatformAuthError, PlatformUnreachableError):
            raise
        except EdgebackError as exc:  # something answered, but not the edge-cloud API
            raise PlatformUnreachableError(
                f"no edge-cloud API at {client.endpoint.base_url}: {exc.message}",
                url=client.endpoint.base_url,
            ) from exc
        elapsed_ms = round((time.monotonic() - started) * 1000)
        log.info("platform.checked", address=req.access.address, elapsed_ms=elapsed_ms)
        return w.PlatformChecked(
            name=info.name, version=info.version, checked_from=self.host_id, elapsed_ms=elapsed_ms
        )

    async def inventory(self, req: w.PlatformInventoryRequest) -> w.PlatformInventory:
        client = self._client(req.access)
        async with self._within(client, req.budget_s):
            hypervisor = None if req.host_id is None else HypervisorId(req.host_id)
            hosts = await client.list_hosts()
            vms = await client.list_vms(hypervisor, keyword=req.keyword)
        return inventory_of(hosts, vms, keyword=req.keyword, hypervisor_id=hypervisor)

    @contextlib.asynccontextmanager
    async def _within(self, client: EdgeCloudClient, budget_s: float) -> AsyncIterator[None]:
        """Open ``client`` for calls that must finish within ``budget_s`` seconds."""
        if not 0 < budget_s <= _MAX_BUDGET_S:
            raise InvalidInputError(f"budget_s must be in (0, {_MAX_BUDGET_S}]", field="budget_s")
        try:
            async with asyncio.timeout(budget_s), client:
                yield
        except TimeoutError as exc:
            raise PlatformUnreachableError(
                f"the platform at {client.endpoint.base_url} did not answer within {budget_s}s",
                url=client.endpoint.base_url,
            ) from exc

    def _client(self, access: w.PlatformAccess) -> EdgeCloudClient:
        if not 1 <= access.port <= 65535 or not access.address or "/" in access.address:
            raise InvalidInputError(
                f"platform address {access.address!r} port {access.port} is not valid"
            )
        endpoint = PlatformEndpoint(
            address=access.address,
            port=access.port,
            ssl=access.ssl,
            verify_ssl=access.verify_ssl,
            access_key=access.access_key,
            secret_key=Secret(access.secret_key),
            ca_file=self.ca_file,
        )
        return EdgeCloudClient(
            endpoint=endpoint,
            retry=RetryPolicy(retries=self.retries, base_delay=0.2, max_delay=1.0),
            timeouts=Timeouts(connect=self.connect_timeout_s, total=self.timeout_s),
        )
