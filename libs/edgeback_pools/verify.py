"""Checking an uploaded chunk record against the pool key before anything is stored.

Blocking (decompression and hashing release the GIL): runs in the node's thread pool,
with one :class:`ChunkDecoder` per thread because zstd contexts are not thread-safe.
"""

from __future__ import annotations

import threading

from edgeback_blocks.chunk import ChunkDecoder, ChunkHeader
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_core.errors import DigestMismatchError

_local = threading.local()


def _decoder() -> ChunkDecoder:
    decoder: ChunkDecoder | None = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = ChunkDecoder()
    return decoder


def verify_upload(record: bytes, digest: ChunkDigest, key: PoolKey) -> int:
    """The chunk's raw length if ``record`` is a valid record of ``digest`` under ``key``.

    Raises ``ChunkFormatError`` for a malformed record and ``DigestMismatchError`` when
    the header names another chunk or the data does not hash to ``digest``.
    """
    header = ChunkHeader.unpack(record)
    if header.digest != digest:
        raise DigestMismatchError(
            f"upload to chunk {digest.hex()} carries a record of {header.digest.hex()}",
            chunk=digest.hex(),
            actual=header.digest.hex(),
        )
    return _decoder().verify_record(record, key, digest)
