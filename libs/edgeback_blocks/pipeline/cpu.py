"""The CPU stage of the pipelines: zero detection, keyed digest, encode and decode.

These functions run on a thread pool sized to the cores (BLAKE3 and zstd release the
GIL, so threads really run in parallel). zstd contexts must never be shared between
threads, so each worker thread keeps its own encoders and decoder in a thread-local.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from edgeback_blocks.chunk import (
    Buffer,
    ChunkDecoder,
    ChunkEncoder,
    Compression,
    chunk_digest,
    is_zero,
)
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_blocks.keys import SealKey

RecordParts = tuple[bytes, Buffer]
"""A chunk record as (header, payload)."""

_local = threading.local()


def cpu_executor(threads: int | None = None) -> ThreadPoolExecutor:
    """A pool for the CPU stage; default one thread per core (at least two)."""
    return ThreadPoolExecutor(threads or max(2, os.cpu_count() or 2), "chunk-cpu")


def _encoder(compression: Compression) -> ChunkEncoder:
    encoders: dict[Compression, ChunkEncoder] | None = getattr(_local, "encoders", None)
    if encoders is None:
        encoders = _local.encoders = {}
    encoder = encoders.get(compression)
    if encoder is None:
        encoder = encoders[compression] = ChunkEncoder(compression)
    return encoder


def _decoder() -> ChunkDecoder:
    decoder: ChunkDecoder | None = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = ChunkDecoder()
    return decoder


def digest_of(key: PoolKey, data: bytes) -> ChunkDigest | None:
    """The chunk's digest, or None when it is all zero (recorded as a zero chunk)."""
    return None if is_zero(data) else chunk_digest(key, data)


def encode(
    data: bytes, digest: ChunkDigest, compression: Compression, seal: SealKey | None = None
) -> RecordParts:
    """The chunk record to upload as (header, payload), with this thread's encoder.

    Not joined: the pool client sends both back to back, so a raw chunk's 4 MiB are
    never copied (the payload is ``data`` itself).
    """
    return _encoder(compression).encode_parts(data, digest, seal)


def digest_and_encode(
    key: PoolKey, data: bytes, compression: Compression, seal: SealKey | None = None
) -> tuple[ChunkDigest | None, RecordParts | None]:
    """Both steps in one hop (server-side dedup uploads every non-zero chunk)."""
    digest = digest_of(key, data)
    if digest is None:
        return None, None
    return digest, encode(data, digest, compression, seal)


def decode(
    record: bytes, key: PoolKey, expected: ChunkDigest, seal: SealKey | None = None
) -> bytes:
    """The verified data of a record; an IntegrityError naming the chunk otherwise."""
    return _decoder().decode(record, key=key, expected=expected, seal=seal)


def verify(record: bytes, key: PoolKey, expected: ChunkDigest, seal: SealKey | None = None) -> int:
    """Check a record as ``decode`` does; its raw length."""
    return _decoder().verify_record(record, key, expected, seal)
