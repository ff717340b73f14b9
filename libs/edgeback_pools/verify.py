"""Checking an uploaded chunk record against the pool key before anything is stored.

Blocking (decompression and hashing release the GIL): runs in the node's thread pool,
with one :class:`~edgeback_blocks.chunk.ChunkDecoder` per thread (zstd contexts are not
thread-safe), whose ``verify_record`` allocates nothing per upload. The checks and their
errors are the decoder's: the node refuses exactly what a restore would refuse.
"""

from __future__ import annotations

import threading

from edgeback_blocks.chunk import ChunkDecoder, check_sealed_record
from edgeback_blocks.ids import ChunkDigest, PoolKey

_local = threading.local()


def verify_upload(
    record: bytes | memoryview, digest: ChunkDigest, key: PoolKey, *, sealed: bool = False
) -> int:
    """The chunk's raw length if ``record`` is a valid record of ``digest`` under ``key``.

    In an encrypted pool (``sealed``) the node holds neither the digest key nor the
    sealing key: it checks the record's structure, its header digest against the URL's
    and its outer checksum (``sealed.py``), and refuses unsealed records.

    Raises ``ChunkFormatError`` for a malformed record, ``ShortReadError`` for a payload
    shorter than its header says and ``DigestMismatchError`` when the header names
    another chunk or the data does not hash to ``digest``.
    """
    if sealed:
        return check_sealed_record(record, digest)
    decoder: ChunkDecoder | None = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = ChunkDecoder()
    return decoder.verify_record(record, key, digest)
