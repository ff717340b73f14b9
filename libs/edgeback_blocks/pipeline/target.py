"""What the pipelines need from a pool: small protocols a storage node client satisfies.

:class:`~edgeback_blocks.pool_client.PoolClient` (the storage node over HTTP) implements
all of them, and so does :class:`~edgeback_pools.local.LocalPool` (a pool directory
opened in this process, for disaster recovery).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from edgeback_blocks.chunk import Buffer
from edgeback_blocks.ids import ChunkDigest

ChunkRecord = Buffer | Sequence[Buffer]
"""A chunk record as one buffer, or as its parts in order (header, payload)."""

CheckpointSink = Callable[[bytes], Awaitable[None]]
"""Stores a partial manifest (``ManifestBuilder.checkpoint()``) where a resumed run finds it."""


class ChunkTarget(Protocol):
    """Where a backup sends chunks."""

    async def missing(self, digests: Iterable[ChunkDigest]) -> set[ChunkDigest]:
        """Those of ``digests`` the pool lacks."""

    async def put_chunk(self, digest: ChunkDigest, record: ChunkRecord) -> bool:
        """Store a chunk record given whole or as parts; True if it was new to the pool.

        Parts let an HTTP client send header and payload back to back without joining them.
        """


class ChunkSource(Protocol):
    """Where a restore or verify fetches chunks."""

    async def get_chunk(self, digest: ChunkDigest) -> bytes:
        """The stored record of ``digest``."""
