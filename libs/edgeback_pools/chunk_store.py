"""What the node asks of a pool's chunk store, whichever kind it is (dedup or standard)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from edgeback_blocks.ids import ChunkDigest
from edgeback_pools.content_dir import ChunkCounts
from edgeback_pools.names import SafeName


class ChunkStore(Protocol):
    """Chunk records of one pool. ``version`` scopes chunks in pools that do not share them."""

    def missing(
        self, digests: Sequence[ChunkDigest], version: SafeName | None
    ) -> list[ChunkDigest]:
        """Those of ``digests`` the store does not hold (order kept, duplicates kept)."""
        ...

    def holds(self, digest: ChunkDigest, version: SafeName | None) -> bool: ...

    async def put(
        self, digest: ChunkDigest, record: bytes | memoryview, version: SafeName | None
    ) -> bool:
        """Store a verified record; ``False`` when it was already there (nothing written)."""
        ...

    async def get(self, digest: ChunkDigest, version: SafeName | None) -> bytes: ...

    def locate(self, digest: ChunkDigest, version: SafeName | None) -> Path:
        """The file holding the record (served with sendfile); ``NotFoundError`` if absent."""
        ...

    def counts(self) -> ChunkCounts: ...
