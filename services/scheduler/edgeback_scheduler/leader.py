"""Being the one active scheduler: the catalog's fenced leadership lease, seen from here.

Every tick the instance asks for the lease (a renewal when it has it). It acts as the
active instance only while its last grant is younger than the lease's lifetime by its
own monotonic clock, counted from before the request was sent (so it stops believing
it is active no later than the catalog lets the lease expire, whatever the latency).
If the catalog cannot be reached it keeps acting until then: the catalog refuses its
marks anyway once another instance took over (``lease_lost``, the fencing token).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from edgeback_core.errors import EdgebackError
from edgeback_scheduler.catalog import CatalogClient

log = structlog.get_logger(__name__)


class LeaderLease:
    def __init__(
        self,
        catalog: CatalogClient,
        *,
        ttl_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog, self._ttl_s, self._monotonic = catalog, ttl_s, monotonic
        self._token: int | None = None
        self._valid_until = 0.0

    @property
    def token(self) -> int | None:
        """The fencing token while this instance is active, else None."""
        if self._token is not None and self._monotonic() >= self._valid_until:
            log.warning("scheduler.lease_expired", token=self._token)
            self._token = None
        return self._token

    async def hold(self) -> int | None:
        """Acquire or renew; the fencing token if this instance is active now."""
        asked = self._monotonic()
        try:
            info = await self._catalog.acquire(self._ttl_s)
        except EdgebackError as exc:
            log.warning("scheduler.lease_unreachable", code=exc.code)
            return self.token
        if not info.granted:
            if self._token is not None:
                log.warning("scheduler.standby", holder=info.holder, token=info.token)
            self._token = None
            return None
        if self._token != info.token:
            log.info("scheduler.active", token=info.token, holder=self._catalog.holder)
        self._token, self._valid_until = info.token, asked + self._ttl_s
        return self._token

    def lost(self) -> None:
        """The catalog refused our token: stop acting until the lease is granted again."""
        self._token = None

    async def release(self) -> None:
        """Hand the lease over at once (a clean stop): the standby need not wait it out."""
        token, self._token = self._token, None
        if token is not None:
            try:
                await self._catalog.release(token)
            except EdgebackError as exc:
                log.warning("scheduler.release_failed", code=exc.code)
