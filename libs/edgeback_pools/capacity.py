"""Capacity of a pool: its filesystem (statvfs) narrowed by an optional quota.

:class:`Capacity` is the pure arithmetic; :func:`filesystem_space` is the one
blocking call. Admission (:meth:`Capacity.admit`) is checked before a write starts,
counting the bytes other in-flight writes have reserved, so concurrent uploads cannot
together overshoot the quota; the filesystem itself still has the last word (ENOSPC
is turned into the same :class:`PoolFullError` by the file layer).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeback_core.errors import PoolFullError


@dataclass(frozen=True, slots=True, kw_only=True)
class FilesystemSpace:
    total: int
    available: int

    @classmethod
    def from_statvfs(cls, st: os.statvfs_result) -> FilesystemSpace:
        return cls(total=st.f_blocks * st.f_frsize, available=st.f_bavail * st.f_frsize)


def filesystem_space(path: Path) -> FilesystemSpace:
    """Blocking: size and space available to unprivileged writers of ``path``'s filesystem."""
    return FilesystemSpace.from_statvfs(os.statvfs(path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    """What an operator sees: with a quota, the pool's share; without, the filesystem's."""

    capacity: int
    used: int
    free: int

    @classmethod
    def of(cls, fs: FilesystemSpace, *, pool_bytes: int, quota: int | None) -> Capacity:
        if quota is None:
            return cls(capacity=fs.total, used=fs.total - fs.available, free=fs.available)
        free = max(0, min(quota - pool_bytes, fs.available))
        return cls(capacity=quota, used=pool_bytes, free=free)

    def admit(self, size: int, *, reserved: int, pool: str) -> None:
        """Raise :class:`PoolFullError` unless ``size`` more bytes fit beside ``reserved``."""
        if size + reserved > self.free:
            raise PoolFullError(
                f"pool {pool!r} is full: {size} bytes do not fit in {self.free} free",
                pool=pool,
                needed=size,
                free=self.free,
                capacity=self.capacity,
            )
