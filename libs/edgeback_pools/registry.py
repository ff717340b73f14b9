"""The pools a node serves: every ``<data_dir>/<name>/pool.json``, opened at start-up.

A pool that cannot be opened (unreadable or invalid ``pool.json``, a key that does not
match it, an unreadable directory) is quarantined instead of stopping the node: it is
logged, left on disk untouched, reported by :meth:`PoolRegistry.get` as
:class:`QuarantinedError` (so its status answers with the reason) and tried again at
the next start. The other pools are served.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor
from pathlib import Path

import structlog

from edgeback_blocks.pool_wire import PoolKind, QuarantinedItem
from edgeback_core.errors import EdgebackError, NotFoundError, QuarantinedError, UnavailableError
from edgeback_pools.pool import DEFAULT_PIN_TTL_S, Pool
from edgeback_pools.pool_meta import POOL_FILE, create_pool

log = structlog.get_logger(__name__)


class PoolRegistry:
    def __init__(
        self,
        data_dir: Path,
        pools: dict[str, Pool],
        executor: Executor,
        quarantined: dict[str, QuarantinedItem] | None = None,
        *,
        pin_ttl_s: float = DEFAULT_PIN_TTL_S,
    ) -> None:
        self.data_dir = data_dir
        self._pools = pools
        self._executor = executor
        self._lock = asyncio.Lock()
        self.quarantined = quarantined or {}
        self._pin_ttl_s = pin_ttl_s

    @classmethod
    async def open(
        cls, data_dir: Path, executor: Executor, *, pin_ttl_s: float = DEFAULT_PIN_TTL_S
    ) -> PoolRegistry:
        loop = asyncio.get_running_loop()
        names = await loop.run_in_executor(executor, _pool_dirs, data_dir)
        pools, quarantined = {}, {}
        for name in names:
            try:
                pools[name] = await Pool.open(data_dir / name, executor, pin_ttl_s=pin_ttl_s)
            except (EdgebackError, OSError) as exc:
                error = exc if isinstance(exc, EdgebackError) else UnavailableError(str(exc))
                quarantined[name] = QuarantinedItem(
                    what="pool", name=name, code=error.code, message=error.message
                )
                log.error("pool.quarantined", pool=name, code=error.code, error=error.message)
        return cls(data_dir, pools, executor, quarantined, pin_ttl_s=pin_ttl_s)

    def names(self) -> list[str]:
        return sorted(self._pools)

    def get(self, name: str) -> Pool:
        pool = self._pools.get(name)
        if pool is not None:
            return pool
        bad = self.quarantined.get(name)
        if bad is not None:
            raise QuarantinedError(
                f"pool {name!r} failed its checks and is quarantined",
                pool=name,
                reason_code=bad.code,
                reason=bad.message,
            )
        raise NotFoundError(f"no pool named {name!r}", pool=name)

    async def create(
        self, name: str, kind: PoolKind, quota_bytes: int | None, *, encrypted: bool = False
    ) -> Pool:
        """Create and open a new pool (``ConflictError`` if the name is taken)."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                self._executor,
                lambda: create_pool(
                    self.data_dir, name, kind, quota_bytes=quota_bytes, encrypted=encrypted
                ),
            )
            pool = await Pool.open(self.data_dir / name, self._executor, pin_ttl_s=self._pin_ttl_s)
            self._pools[name] = pool
            return pool


def _pool_dirs(data_dir: Path) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return sorted(
        entry.name
        for entry in os.scandir(data_dir)
        if entry.is_dir()
        and not entry.name.startswith(".")
        and os.path.exists(os.path.join(entry.path, POOL_FILE))
    )
