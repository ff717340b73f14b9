"""Checking an uploaded chunk record against the pool key before anything is stored.

Blocking (decompression and hashing release the GIL): runs in the node's thread pool.
This is the node's hottest CPU path, so it allocates nothing per upload: a raw payload
is hashed in place (a view of the request body), a zstd payload is decompressed into
one reusable buffer per thread (fresh 4 MiB allocations cost page faults) and hashed
there. Each thread has its own zstd context because contexts are not thread-safe. The
checks and their errors are those of :class:`edgeback_blocks.chunk.ChunkDecoder`.
"""

from __future__ import annotations

import threading

import zstandard

from edgeback_blocks.chunk import CHUNK_SIZE, HEADER_SIZE, ChunkHeader, Codec, chunk_digest
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_core.errors import ChunkFormatError, DigestMismatchError, ShortReadError

_local = threading.local()


class _Inflater:
    """One thread's zstd context and output buffer (one byte spare to catch overlong data)."""

    def __init__(self) -> None:
        self._decompressor = zstandard.ZstdDecompressor()
        self._buffer = memoryview(bytearray(CHUNK_SIZE + 1))

    def inflate(self, payload: memoryview, chunk: ChunkDigest) -> memoryview:
        """The decompressed data, a view of this thread's buffer valid until the next call."""
        filled = 0
        try:
            with self._decompressor.stream_reader(payload, read_size=payload.nbytes) as reader:
                while filled < self._buffer.nbytes:
                    got = reader.readinto(self._buffer[filled:])
                    if not got:
                        break
                    filled += got
        except zstandard.ZstdError as exc:
            raise DigestMismatchError(
                f"chunk {chunk.hex()} is corrupt: its payload does not decompress ({exc})",
                chunk=chunk.hex(),
            ) from exc
        return self._buffer[:filled]


def _inflater() -> _Inflater:
    inflater: _Inflater | None = getattr(_local, "inflater", None)
    if inflater is None:
        inflater = _local.inflater = _Inflater()
    return inflater


def verify_upload(record: bytes | memoryview, digest: ChunkDigest, key: PoolKey) -> int:
    """The chunk's raw length if ``record`` is a valid record of ``digest`` under ``key``.

    Raises ``ChunkFormatError`` for a malformed record, ``ShortReadError`` for a payload
    shorter than its header says and ``DigestMismatchError`` when the header names
    another chunk or the data does not hash to ``digest``.
    """
    header = ChunkHeader.unpack(record)
    if header.digest != digest:
        raise DigestMismatchError(
            f"upload to chunk {digest.hex()} carries a record of {header.digest.hex()}",
            chunk=digest.hex(),
            actual=header.digest.hex(),
        )
    payload = _payload(record, header, digest)
    data = payload if header.codec == Codec.RAW else _inflater().inflate(payload, digest)
    if data.nbytes != header.raw_length:
        raise ShortReadError(
            f"chunk {digest.hex()} decompresses to {data.nbytes} bytes or more, "
            f"its header says {header.raw_length}",
            chunk=digest.hex(),
            length=data.nbytes,
            expected_length=header.raw_length,
        )
    actual = chunk_digest(key, data)
    if actual != digest:
        raise DigestMismatchError(
            f"chunk {digest.hex()} is corrupt: its data hashes to {actual.hex()}",
            chunk=digest.hex(),
            actual=actual.hex(),
        )
    return header.raw_length


def _payload(record: bytes | memoryview, header: ChunkHeader, digest: ChunkDigest) -> memoryview:
    stored = len(record) - HEADER_SIZE
    if stored != header.stored_length:
        error = ShortReadError if stored < header.stored_length else ChunkFormatError
        raise error(
            f"chunk {digest.hex()} record holds {stored} payload bytes, "
            f"its header says {header.stored_length}",
            chunk=digest.hex(),
            length=stored,
            expected_length=header.stored_length,
        )
    return memoryview(record)[HEADER_SIZE:]
