"""Chunk records: round trips per codec, and every kind of corruption is reported loudly."""

from __future__ import annotations

import os
import random
import struct

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from edgeback_blocks.chunk import (
    CHUNK_SIZE,
    HEADER_SIZE,
    ChunkDecoder,
    ChunkEncoder,
    ChunkHeader,
    Codec,
    Compression,
    _one_whole_frame,
    _worth_compressing,
    chunk_digest,
    is_zero,
)
from edgeback_blocks.ids import ChunkDigest, PoolKey
from edgeback_core.errors import (
    ChunkFormatError,
    DigestMismatchError,
    IntegrityError,
    InvalidInputError,
    ShortReadError,
)

KEY = PoolKey(bytes(range(32)))
OTHER_KEY = PoolKey(bytes(range(1, 33)))
TEXT = (b"the quick brown fox jumps over the lazy dog 0123456789\n" * 80_000)[:CHUNK_SIZE]
RANDOM = random.Random(7).randbytes(CHUNK_SIZE)
_WORDS = [
    "backup",
    "restore",
    "volume",
    "snapshot",
    "chunk",
    "digest",
    "manifest",
    "pool",
    "node",
    "the",
    "a",
    "of",
    "and",
]
MIXED_TEXT = " ".join(random.Random(3).choice(_WORDS) for _ in range(40_000)).encode()[:200_000]


def _record(data: bytes, compression: Compression = Compression.FAST) -> tuple[bytes, ChunkDigest]:
    digest = chunk_digest(KEY, data)
    return ChunkEncoder(compression).encode(data, digest), digest


def test_digest_is_keyed_blake3() -> None:
    assert len(chunk_digest(KEY, b"abc")) == 32
    assert chunk_digest(KEY, b"abc") != chunk_digest(OTHER_KEY, b"abc")
    assert chunk_digest(KEY, memoryview(b"abc")) == chunk_digest(KEY, b"abc")


@pytest.mark.parametrize("compression", list(Compression))
@pytest.mark.parametrize(
    "data", [TEXT, RANDOM, bytes(CHUNK_SIZE), b"x"], ids=["text", "random", "zero", "one"]
)
def test_round_trip(compression: Compression, data: bytes) -> None:
    record, digest = _record(data, compression)
    header = ChunkHeader.unpack(record)
    assert header.raw_length == len(data)
    assert header.stored_length == len(record) - HEADER_SIZE
    assert header.digest == digest
    assert ChunkDecoder().decode(record, key=KEY, expected=digest) == data


def test_compressible_data_is_compressed_and_random_data_stored_raw() -> None:
    text_record, _ = _record(TEXT)
    random_record, _ = _record(RANDOM)
    assert ChunkHeader.unpack(text_record).codec is Codec.ZSTD
    assert len(text_record) < len(TEXT) // 4
    assert ChunkHeader.unpack(random_record).codec is Codec.RAW
    assert len(random_record) == CHUNK_SIZE + HEADER_SIZE
    assert ChunkHeader.unpack(_record(TEXT, Compression.NONE)[0]).codec is Codec.RAW


@pytest.mark.parametrize(
    "data",
    [
        RANDOM[: CHUNK_SIZE // 2] + TEXT[: CHUNK_SIZE // 2],
        TEXT[: CHUNK_SIZE // 4] + RANDOM[: CHUNK_SIZE * 3 // 4],
        bytes(RANDOM[i] if i % 4 else 0 for i in range(CHUNK_SIZE)),  # compresses ~8%
    ],
    ids=["half-random", "quarter-text", "slightly-compressible"],
)
def test_partly_compressible_chunks_pass_the_probe_and_are_compressed(data: bytes) -> None:
    record, digest = _record(data)
    assert ChunkHeader.unpack(record).codec is Codec.ZSTD
    assert len(record) < len(data)
    assert ChunkDecoder().decode(record, key=KEY, expected=digest) == data


def test_the_probe_spares_zstd_on_random_chunks_only() -> None:
    compressor = zstandard.ZstdCompressor(level=1)
    assert not _worth_compressing(compressor, RANDOM, len(RANDOM))
    assert _worth_compressing(compressor, TEXT, len(TEXT))
    half = RANDOM[: CHUNK_SIZE // 2] + TEXT[: CHUNK_SIZE // 2]
    assert _worth_compressing(compressor, half, len(half))


def test_small_chunks_skip_the_probe_and_still_compress() -> None:
    record, _ = _record(TEXT[:65536])
    assert ChunkHeader.unpack(record).codec is Codec.ZSTD
    tiny_random, _ = _record(RANDOM[:100])
    assert ChunkHeader.unpack(tiny_random).codec is Codec.RAW


def test_header_layout_is_little_endian_48_bytes() -> None:
    digest = ChunkDigest(bytes(range(32)))
    packed = ChunkHeader(codec=Codec.ZSTD, raw_length=5, stored_length=3, digest=digest).pack()
    assert packed == b"EBCK" + bytes([1, 1, 0, 0]) + struct.pack("<II", 5, 3) + digest
    assert len(packed) == HEADER_SIZE == 48


@pytest.mark.parametrize(
    ("offset", "field"),
    [
        (0, b"XBCK"),
        (4, b"\x02"),
        (5, b"\x07"),
        (6, b"\x01\x00"),
        (8, struct.pack("<I", 0)),
        (8, struct.pack("<I", CHUNK_SIZE + 1)),
        (12, struct.pack("<I", 0)),
    ],
    ids=["magic", "version", "codec", "reserved", "raw-zero", "raw-too-big", "stored-zero"],
)
def test_bad_header_fields_are_rejected(offset: int, field: bytes) -> None:
    record = bytearray(_record(b"abc" * 1000)[0])
    record[offset : offset + len(field)] = field
    with pytest.raises(ChunkFormatError) as caught:
        ChunkHeader.unpack(bytes(record))
    assert caught.value.code == "chunk_header_invalid"


def test_raw_record_with_stored_length_unlike_raw_length_is_rejected() -> None:
    record = bytearray(_record(RANDOM[:100])[0])
    record[12:16] = struct.pack("<I", 99)
    with pytest.raises(ChunkFormatError):
        ChunkHeader.unpack(bytes(record))


def test_short_buffer_is_not_a_header() -> None:
    with pytest.raises(ChunkFormatError):
        ChunkHeader.unpack(b"EBCK\x01")


def test_truncated_record_is_a_short_read_naming_the_chunk() -> None:
    record, digest = _record(TEXT)
    with pytest.raises(ShortReadError) as caught:
        ChunkDecoder().decode(record[:-1], key=KEY, expected=digest)
    assert digest.hex() in caught.value.message
    assert caught.value.details["chunk"] == digest.hex()


def test_record_with_trailing_garbage_is_rejected() -> None:
    record, digest = _record(RANDOM)
    with pytest.raises(ChunkFormatError):
        ChunkDecoder().decode(record + b"\0", key=KEY, expected=digest)


def test_record_of_another_chunk_is_rejected() -> None:
    record, _ = _record(TEXT)
    other = chunk_digest(KEY, b"other")
    with pytest.raises(DigestMismatchError) as caught:
        ChunkDecoder().decode(record, key=KEY, expected=other)
    assert other.hex() in caught.value.message


def test_wrong_pool_key_is_a_digest_mismatch() -> None:
    record, digest = _record(TEXT)
    with pytest.raises(DigestMismatchError):
        ChunkDecoder().decode(record, key=OTHER_KEY, expected=digest)


def test_lying_raw_length_is_reported() -> None:
    record, digest = _record(TEXT)
    lying = bytearray(record)
    lying[8:12] = struct.pack("<I", len(TEXT) - 1)
    with pytest.raises(IntegrityError) as caught:
        ChunkDecoder().decode(bytes(lying), key=KEY, expected=digest)
    assert digest.hex() in caught.value.message


@given(st.data())
def test_a_flipped_payload_byte_never_yields_wrong_data(data: st.DataObject) -> None:
    """Refused with an error naming the chunk, or, where zstd ignores the bit (an unused
    frame-header flag, a spare bit of a Huffman table), the exact original data."""
    source = data.draw(st.sampled_from([TEXT[:65536], RANDOM[:65536], MIXED_TEXT]))
    record, digest = _record(source)
    position = data.draw(st.integers(min_value=HEADER_SIZE, max_value=len(record) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    corrupt = bytearray(record)
    corrupt[position] ^= flip
    decoder = ChunkDecoder()
    try:
        decoder.verify_record(bytes(corrupt), KEY, digest)
    except IntegrityError as refused:
        assert refused.details["chunk"] == digest.hex()
        with pytest.raises(IntegrityError):
            decoder.decode(bytes(corrupt), key=KEY, expected=digest)
    else:
        assert decoder.decode(bytes(corrupt), key=KEY, expected=digest) == source


@pytest.mark.parametrize("where", ["last-block-bit", "trailing-byte"])
def test_a_cut_off_or_padded_zstd_frame_is_refused_even_when_its_data_is_right(where: str) -> None:
    record, digest = _record(TEXT[:65536])
    corrupt = bytearray(record)
    if where == "last-block-bit":  # first block header after the 7-byte frame header
        corrupt[HEADER_SIZE + 7] ^= 1
    else:
        corrupt += b"\0"
        corrupt[HEADER_SIZE - 36 : HEADER_SIZE - 32] = struct.pack("<I", len(corrupt) - HEADER_SIZE)
    for check in (
        lambda: ChunkDecoder().verify_record(bytes(corrupt), KEY, digest),
        lambda: ChunkDecoder().decode(bytes(corrupt), key=KEY, expected=digest),
    ):
        with pytest.raises(IntegrityError):
            check()


def test_frames_with_a_content_checksum_are_whole_frames() -> None:
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(TEXT[:65536])
    assert _one_whole_frame(memoryview(frame))
    assert not _one_whole_frame(memoryview(frame)[:-1])
    assert not _one_whole_frame(memoryview(b"not a frame"))


def test_verify_record_returns_the_raw_length() -> None:
    record, digest = _record(TEXT)
    assert ChunkDecoder().verify_record(record, KEY, digest) == len(TEXT)


def test_encode_parts_avoid_copying_raw_data() -> None:
    header, payload = ChunkEncoder().encode_parts(RANDOM, chunk_digest(KEY, RANDOM))
    assert payload is RANDOM
    assert len(header) == HEADER_SIZE


def test_encoder_rejects_empty_or_oversized_chunks() -> None:
    encoder = ChunkEncoder()
    with pytest.raises(InvalidInputError):
        encoder.encode(b"", chunk_digest(KEY, b""))
    with pytest.raises(InvalidInputError):
        encoder.encode(bytes(CHUNK_SIZE + 1), chunk_digest(KEY, b""))


def test_is_zero() -> None:
    zero = bytearray(CHUNK_SIZE)
    assert is_zero(zero)
    assert is_zero(memoryview(zero)[:1000])
    assert is_zero(b"")
    assert is_zero(bytes(2 * CHUNK_SIZE + 3))
    zero[-1] = 1
    assert not is_zero(zero)
    assert not is_zero(bytes(2 * CHUNK_SIZE) + b"\1")
    assert not is_zero(os.urandom(16) + bytes(100))


def test_compression_levels() -> None:
    assert [c.zstd_level for c in Compression] == [None, 1, 3, 9]
    assert Compression("fast") is Compression.FAST
