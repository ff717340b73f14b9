"""The pools a node serves: every ``<data_dir>/<name>/pool.json``, opened at start-up."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor
from pathlib import Path

from edgeback_blocks.pool_wire import PoolKind
from edgeback_core.errors import NotFoundError
from edgeback_pools.pool import Pool
from edgeback_pools.pool_meta import POOL_FILE, create_pool


class PoolRegistry:
    def __init__(self, data_dir: Path, pools: dict[str, Pool], executor: Executor) -> None:
        self.data_dir = data_dir
        self._pools = pools
        self._executor = executor
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, data_dir: Path, executor: Executor) -> PoolRegistry:
        loop = asyncio.get_running_loop()
        names = await loop.run_in_executor(executor, _pool_dirs, data_dir)
        pools = {}
        for name in names:
            pools[name] = await Pool.open(data_dir / name, executor)
        return cls(data_dir, pools, executor)

    def names(self) -> list[str]:
        return sorted(self._pools)

    def get(self, name: str) -> Pool:
        pool = self._pools.get(name)
        if pool is None:
            raise NotFoundError(f"no pool named {name!r}", pool=name)
        return pool

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
            pool = await Pool.open(self.data_dir / name, self._executor)
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
