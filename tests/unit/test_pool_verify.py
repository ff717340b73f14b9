"""The node's upload check: same verdicts as ChunkDecoder, without per-upload buffers."""

from __future__ import annotations

import os

import pytest
import zstandard

from edgeback_blocks.chunk import HEADER_SIZE, ChunkEncoder, ChunkHeader, Codec, chunk_digest
from edgeback_blocks.ids import PoolKey
from edgeback_core.errors import ChunkFormatError, DigestMismatchError, ShortReadError
from edgeback_pools.verify import verify_upload

KEY = PoolKey(bytes(range(32)))
TEXT = b"the quick brown fox jumps over the lazy dog " * 20000


@pytest.mark.parametrize("data", [TEXT, os.urandom(1 << 20), b"x"])
def test_valid_records_pass_repeatedly(data: bytes) -> None:
    digest = chunk_digest(KEY, data)
    record = ChunkEncoder().encode(data, digest)
    for _ in range(3):  # the thread's buffer is reused
        assert verify_upload(record, digest, KEY) == len(data)


def test_compressed_data_that_does_not_hash_is_refused() -> None:
    digest = chunk_digest(KEY, TEXT)
    other = ChunkEncoder().encode(TEXT[:-1] + b"!", digest)
    assert ChunkHeader.unpack(other).codec == Codec.ZSTD
    with pytest.raises(DigestMismatchError):
        verify_upload(other, digest, KEY)


def test_raw_data_flipped_is_refused() -> None:
    data = os.urandom(4096)
    digest = chunk_digest(KEY, data)
    record = bytearray(ChunkEncoder().encode(data, digest))
    record[-1] ^= 1
    with pytest.raises(DigestMismatchError):
        verify_upload(bytes(record), digest, KEY)


def test_garbage_payload_and_wrong_lengths_are_refused() -> None:
    digest = chunk_digest(KEY, TEXT)
    record = ChunkEncoder().encode(TEXT, digest)
    header, payload = record[:HEADER_SIZE], record[HEADER_SIZE:]
    with pytest.raises(DigestMismatchError):  # does not decompress
        verify_upload(header + bytes(len(payload)), digest, KEY)
    with pytest.raises(ShortReadError):
        verify_upload(record[:-10], digest, KEY)
    with pytest.raises(ChunkFormatError):
        verify_upload(record + b"extra", digest, KEY)


def test_payload_longer_than_its_header_says_is_refused() -> None:
    data = TEXT[: 1 << 16]
    digest = chunk_digest(KEY, data)
    payload = zstandard.ZstdCompressor(level=1).compress(data + b"more")
    header = ChunkHeader(codec=Codec.ZSTD, raw_length=len(data), stored_length=len(payload),
                         digest=digest)  # fmt: skip
    with pytest.raises(ShortReadError):
        verify_upload(header.pack() + payload, digest, KEY)


def test_record_of_another_chunk_is_refused() -> None:
    digest = chunk_digest(KEY, TEXT)
    record = ChunkEncoder().encode(b"other", chunk_digest(KEY, b"other"))
    with pytest.raises(DigestMismatchError):
        verify_upload(record, digest, KEY)
