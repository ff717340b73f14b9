"""Sealed chunk records of encrypted pools: secrecy, determinism, and what the node checks."""

from __future__ import annotations

import pytest

from edgeback_blocks.chunk import ChunkDecoder, ChunkEncoder, check_sealed_record, chunk_digest
from edgeback_blocks.keys import ClientKeys
from edgeback_core.errors import ChunkFormatError, DigestMismatchError, IntegrityError
from edgeback_pools.verify import verify_upload

KEYS = ClientKeys.encrypted_pool(bytes(range(32)))
TEXT = b"edgeback-secret-marker " * 9000


@pytest.mark.parametrize("data", [TEXT, bytes(range(256)) * 64])
def test_sealed_records_hide_the_data_and_decode_with_the_key(data: bytes) -> None:
    assert KEYS.chunk_seal is not None
    digest = chunk_digest(KEYS.digest, data)
    record = ChunkEncoder().encode(data, digest, KEYS.chunk_seal)
    assert b"edgeback-secret" not in record and bytes(range(64)) not in record
    assert record == ChunkEncoder().encode(data, digest, KEYS.chunk_seal)  # dedup: stable
    assert (
        ChunkDecoder().decode(record, key=KEYS.digest, expected=digest, seal=KEYS.chunk_seal)
        == data
    )
    assert check_sealed_record(record, digest) == len(data)
    assert verify_upload(record, digest, KEYS.digest, sealed=True) == len(data)


def test_a_wrong_key_or_a_changed_byte_is_an_integrity_error() -> None:
    assert KEYS.chunk_seal is not None
    digest = chunk_digest(KEYS.digest, TEXT)
    record = bytearray(ChunkEncoder().encode(TEXT, digest, KEYS.chunk_seal))
    other = ClientKeys.encrypted_pool(bytes(32))
    with pytest.raises(DigestMismatchError, match="authenticate"):
        ChunkDecoder().decode(
            bytes(record), key=other.digest, expected=digest, seal=other.chunk_seal
        )
    record[-1] ^= 1
    with pytest.raises(DigestMismatchError, match="outer check"):
        check_sealed_record(bytes(record), digest)  # the node catches it without a key
    with pytest.raises(IntegrityError):
        ChunkDecoder().decode(bytes(record), key=KEYS.digest, expected=digest, seal=KEYS.chunk_seal)


def test_plain_and_sealed_records_do_not_mix() -> None:
    assert KEYS.chunk_seal is not None
    digest = chunk_digest(KEYS.digest, TEXT)
    plain = ChunkEncoder().encode(TEXT, digest)
    with pytest.raises(ChunkFormatError, match="not sealed"):
        verify_upload(plain, digest, KEYS.digest, sealed=True)
    with pytest.raises(ChunkFormatError, match="not sealed"):
        ChunkDecoder().decode(plain, key=KEYS.digest, expected=digest, seal=KEYS.chunk_seal)
    sealed = ChunkEncoder().encode(TEXT, digest, KEYS.chunk_seal)
    with pytest.raises(ChunkFormatError, match="no pool secret"):
        verify_upload(sealed, digest, KEYS.digest)
