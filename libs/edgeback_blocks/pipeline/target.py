"""What the pipelines need from a pool: small protocols a storage node client satisfies.

:class:`~edgeback_blocks.pool_client.PoolClient` (the storage node over HTTP) implements
all of them. A pool directory opened without a node (disaster recovery) is meant to
plug in here too, once the node's file stores move into ``libs``: it only has to offer
these coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from edgeback_blocks.ids import ChunkDigest

CheckpointSink = Callable[[bytes], Awaitable[None]]
"""Stores a partial manifest (``ManifestBuilder.checkpoint()``) where a resumed run finds it."""


class ChunkTarget(Protocol):
    """Where a backup sends chunks."""

    async def missing(self, digests: Iterable[ChunkDigest]) -> set[ChunkDigest]:
        """Those of ``digests`` the pool lacks."""

    async def put_chunk(self, digest: ChunkDigest, record: bytes) -> bool:
        """Store a chunk record; True if it was new to the pool."""


class ChunkSource(Protocol):
    """Where a restore or verify fetches chunks."""

    async def get_chunk(self, digest: ChunkDigest) -> bytes:
        """The stored record of ``digest``."""
