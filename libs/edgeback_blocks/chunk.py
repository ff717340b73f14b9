"""Chunk records: the self-describing on-disk and on-wire form of one chunk of a disk.

A chunk is up to ``CHUNK_SIZE`` bytes of an image at a chunk-aligned offset, named by its
keyed BLAKE3 digest. A record is a 48-byte header (magic, format version, codec, raw and
stored lengths, digest) followed by the payload, compressed with zstd or stored raw when
compression does not shrink it. Every read checks the header, the lengths and the digest,
so a corrupted chunk is always reported, never returned. Layouts: ``docs/formats.md``.

Encoders and decoders hold zstd contexts that must not be shared between threads (a shared
compressor crashed the process): create one per worker thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final, Self

import blake3
import zstandard

from edgeback_blocks import sealed
from edgeback_blocks.ids import DIGEST_SIZE, ChunkDigest, PoolKey
from edgeback_blocks.keys import SealKey
from edgeback_core.errors import (
    ChunkFormatError,
    DigestMismatchError,
    InvalidInputError,
    ShortReadError,
)

CHUNK_SIZE: Final = 4 * 1024 * 1024
MAGIC: Final = b"EBCK"
FORMAT_VERSION: Final = 1
SEALED_VERSION: Final = 2
"""Records of encrypted pools: the payload is sealed (``sealed.py``)."""
ZERO_CHUNK: Final = bytes(CHUNK_SIZE)

# magic | version u8 | codec u8 | reserved u16 | raw_length u32 | stored_length u32 | digest
_HEADER: Final = struct.Struct("<4sBBHII32s")
HEADER_SIZE: Final = _HEADER.size  # 48

Buffer = bytes | bytearray | memoryview

PROBE_SLICES: Final = 8
PROBE_SLICE: Final = 16 * 1024
PROBE_MIN_GAIN: Final = 32
"""A chunk is compressed only if its samples shrink by at least 1/32 (about 3%)."""


class Codec(IntEnum):
    """How a record's payload is stored."""

    RAW = 0
    ZSTD = 1


class Compression(StrEnum):
    """Operator-facing compression setting; ``FAST`` (zstd level 1) is the default."""

    NONE = "none"
    FAST = "fast"
    BALANCED = "balanced"
    BEST = "best"

    @property
    def zstd_level(self) -> int | None:
        """The zstd level, or None when chunks are stored raw."""
        return _ZSTD_LEVELS[self]


_CODEC_VALUES: Final = frozenset(int(codec) for codec in Codec)

_ZSTD_LEVELS: Final[dict[Compression, int | None]] = {
    Compression.NONE: None,
    Compression.FAST: 1,
    Compression.BALANCED: 3,
    Compression.BEST: 9,
}


def chunk_digest(key: PoolKey, data: Buffer) -> ChunkDigest:
    """The keyed BLAKE3 digest naming ``data`` in the pool whose key is ``key``."""
    return ChunkDigest(blake3.blake3(data, key=key).digest())


def is_zero(data: Buffer) -> bool:
    """True when every byte of ``data`` is zero (a memcmp against a shared zero buffer)."""
    size = len(data) if not isinstance(data, memoryview) else data.nbytes
    if size <= CHUNK_SIZE:
        return ZERO_CHUNK.startswith(data)
    view = memoryview(data).cast("B")
    return all(
        ZERO_CHUNK.startswith(view[start : start + CHUNK_SIZE])
        for start in range(0, size, CHUNK_SIZE)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHeader:
    """The fixed 48-byte header in front of every chunk record."""

    codec: Codec
    raw_length: int
    stored_length: int
    digest: ChunkDigest
    version: int = FORMAT_VERSION

    @property
    def sealed(self) -> bool:
        return self.version == SEALED_VERSION

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC, self.version, self.codec, 0, self.raw_length, self.stored_length, self.digest
        )

    @classmethod
    def unpack(cls, buf: Buffer) -> Self:
        """Parse and check the header at the start of ``buf`` (which may be a whole record)."""
        if len(buf) < HEADER_SIZE:
            raise ChunkFormatError(
                "chunk record shorter than its header", length=len(buf), needed=HEADER_SIZE
            )
        fields = _HEADER.unpack_from(buf)
        problem = _header_problem(fields)
        _, version, codec, _, raw_length, stored_length, digest = fields
        if problem is not None:
            raise ChunkFormatError(f"invalid chunk header: {problem}", digest=digest.hex())
        return cls(
            version=version,
            codec=Codec(codec),
            raw_length=raw_length,
            stored_length=stored_length,
            digest=ChunkDigest(digest),
        )


def _header_problem(fields: tuple[bytes, int, int, int, int, int, bytes]) -> str | None:
    magic, version, codec, reserved, raw_length, stored_length, _ = fields
    overhead = sealed.OVERHEAD if version == SEALED_VERSION else 0
    checks = (
        (magic == MAGIC, f"bad magic {magic!r}"),
        (version in (FORMAT_VERSION, SEALED_VERSION), f"unknown format version {version}"),
        (codec in _CODEC_VALUES, f"unknown codec {codec}"),
        (reserved == 0, "reserved bits set"),
        (0 < raw_length <= CHUNK_SIZE, f"raw length {raw_length} out of range"),
        (stored_length > overhead, "empty payload"),
        (
            codec != Codec.RAW or stored_length == raw_length + overhead,
            "raw payload length mismatch",
        ),
    )
    return next((problem for ok, problem in checks if not ok), None)


class ChunkEncoder:
    """Builds chunk records. Holds one zstd compressor: use one encoder per thread."""

    def __init__(self, compression: Compression = Compression.FAST) -> None:
        self.compression = compression
        level = compression.zstd_level
        self._compressor = (
            None
            if level is None
            else zstandard.ZstdCompressor(
                level=level, write_checksum=False, write_content_size=True
            )
        )

    def encode_parts(
        self, data: Buffer, digest: ChunkDigest, seal: SealKey | None = None
    ) -> tuple[bytes, Buffer]:
        """The record as (header, payload), for writers that can send both without a copy.

        The payload is ``data`` itself when the chunk is stored raw and not sealed. With
        ``seal`` (an encrypted pool) the record is sealed (format version 2).
        """
        raw_length = len(data) if not isinstance(data, memoryview) else data.nbytes
        if not 0 < raw_length <= CHUNK_SIZE:
            raise InvalidInputError("chunk length out of range", length=raw_length)
        if len(digest) != DIGEST_SIZE:
            raise InvalidInputError("chunk digest must be 32 bytes", length=len(digest))
        payload: Buffer = data
        codec = Codec.RAW
        compressor = self._compressor
        if compressor is not None and _worth_compressing(compressor, data, raw_length):
            compressed = compressor.compress(data)
            if len(compressed) < raw_length:
                payload, codec = compressed, Codec.ZSTD
        stored = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
        if seal is None:
            header = ChunkHeader(
                codec=codec, raw_length=raw_length, stored_length=stored, digest=digest
            )
            return header.pack(), payload
        packed = ChunkHeader(
            codec=codec,
            raw_length=raw_length,
            stored_length=stored + sealed.OVERHEAD,
            digest=digest,
            version=SEALED_VERSION,
        ).pack()
        prefix, ciphertext = sealed.seal(seal, packed, payload)
        return packed + prefix, ciphertext

    def encode(self, data: Buffer, digest: ChunkDigest, seal: SealKey | None = None) -> bytes:
        """The complete record (header + payload) for ``data`` whose digest is ``digest``."""
        header, payload = self.encode_parts(data, digest, seal)
        return b"".join((header, payload))


def _worth_compressing(compressor: zstandard.ZstdCompressor, data: Buffer, raw_length: int) -> bool:
    """False when samples spread over ``data`` do not shrink by ``PROBE_MIN_GAIN``.

    Random or already-compressed data costs zstd time for nothing; the samples
    (``PROBE_SLICES`` x ``PROBE_SLICE``, 3% of a full chunk) cost 3% of that, and stop at
    the first slice that shows the chunk is worth compressing (text pays for one slice).
    A chunk that is mostly incompressible with a little compressible data between the
    samples may be stored raw: a few percent of space for a cheaper backup.
    """
    if raw_length < PROBE_SLICES * PROBE_SLICE * 4:
        return True
    view = memoryview(data).cast("B")
    stride = raw_length // PROBE_SLICES
    sampled = packed = 0
    for start in range(0, stride * PROBE_SLICES, stride):
        sampled += PROBE_SLICE
        packed += len(compressor.compress(view[start : start + PROBE_SLICE]))
        if packed * PROBE_MIN_GAIN < sampled * (PROBE_MIN_GAIN - 1):
            return True
    return False


class ChunkDecoder:
    """Parses and verifies chunk records. Holds one zstd decompressor and one scratch
    buffer: one decoder per thread."""

    def __init__(self) -> None:
        self._decompressor = zstandard.ZstdDecompressor()
        self._scratch: memoryview | None = None

    def decode(
        self, record: Buffer, *, key: PoolKey, expected: ChunkDigest, seal: SealKey | None = None
    ) -> bytes:
        """The chunk's data, after checking header, lengths and the keyed digest.

        ``seal`` is the chunk sealing key of an encrypted pool (its records are sealed,
        a plain record there is refused, and so is a sealed record without it).
        Raises an ``IntegrityError`` subclass naming the chunk on any mismatch.
        """
        header, payload = _split_record(record, expected)
        payload = _unsealed(record, header, payload, expected, seal)
        data = self._payload_data(header, payload, expected)
        _check_digest(key, data, expected)
        return data if isinstance(data, bytes) else bytes(data)

    def verify_record(
        self, record: Buffer, key: PoolKey, expected: ChunkDigest, seal: SealKey | None = None
    ) -> int:
        """Check ``record`` as ``decode`` does; returns the raw length.

        Allocates nothing per call for plain records (the storage node's hottest path): a
        raw payload is hashed in place, a compressed one is inflated into this decoder's
        scratch buffer (fresh 4 MiB allocations cost page faults).
        """
        header, payload = _split_record(record, expected)
        payload = _unsealed(record, header, payload, expected, seal)
        data = payload if header.codec == Codec.RAW else self._inflate(header, payload, expected)
        _check_digest(key, data, expected)
        return header.raw_length

    def _inflate(self, header: ChunkHeader, payload: memoryview, chunk: ChunkDigest) -> memoryview:
        """The payload decompressed into the scratch buffer (valid until the next call)."""
        if self._scratch is None:  # one byte spare: catches data longer than the header says
            self._scratch = memoryview(bytearray(CHUNK_SIZE + 1))
        scratch, filled = self._scratch, 0
        try:
            with self._decompressor.stream_reader(payload, read_size=payload.nbytes) as reader:
                while filled < scratch.nbytes and (got := reader.readinto(scratch[filled:])):
                    filled += got
        except zstandard.ZstdError as exc:
            raise _undecompressible(chunk, exc) from exc
        _check_whole_frame(payload, chunk)  # the reader stops quietly at a cut-off frame
        _check_length(header, filled, chunk)
        return scratch[:filled]

    def _payload_data(self, header: ChunkHeader, payload: memoryview, chunk: ChunkDigest) -> Buffer:
        if header.codec == Codec.RAW:
            return payload
        try:
            # a corrupt frame header can declare any content size, which decompress()
            # would allocate up front (MemoryError): refuse it before that
            declared = zstandard.frame_content_size(payload)
            if declared > header.raw_length:
                raise zstandard.ZstdError(f"frame declares {declared} bytes")
            data = self._decompressor.decompress(payload, max_output_size=header.raw_length)
        except zstandard.ZstdError as exc:
            raise _undecompressible(chunk, exc) from exc
        _check_whole_frame(payload, chunk)
        _check_length(header, len(data), chunk)
        return data


def check_sealed_record(record: Buffer, expected: ChunkDigest) -> int:
    """What a node without the pool secret can check of a sealed record; its raw length.

    Header, lengths, the header's digest against ``expected`` and the outer check; a
    plain record is refused (nothing unencrypted enters an encrypted pool).
    """
    header, payload = _split_record(record, expected)
    if not header.sealed:
        raise ChunkFormatError(
            f"chunk {expected.hex()} is not sealed, and this pool is encrypted",
            chunk=expected.hex(),
        )
    sealed.check_outer(memoryview(record)[:HEADER_SIZE], payload, expected)
    return header.raw_length


def _unsealed(
    record: Buffer,
    header: ChunkHeader,
    payload: memoryview,
    expected: ChunkDigest,
    seal: SealKey | None,
) -> memoryview:
    if header.sealed != (seal is not None):
        problem = "sealed, and no pool secret was given" if header.sealed else "not sealed"
        raise ChunkFormatError(f"chunk {expected.hex()} is {problem}", chunk=expected.hex())
    if seal is None:
        return payload
    head = memoryview(record).cast("B")[:HEADER_SIZE]
    return memoryview(sealed.open_sealed(seal, head, payload, expected))


def _check_digest(key: PoolKey, data: Buffer, expected: ChunkDigest) -> None:
    actual = chunk_digest(key, data)
    if actual != expected:
        raise DigestMismatchError(
            f"chunk {expected.hex()} is corrupt: its data hashes to {actual.hex()}",
            chunk=expected.hex(),
            actual=actual.hex(),
        )


def _check_length(header: ChunkHeader, length: int, chunk: ChunkDigest) -> None:
    if length != header.raw_length:
        raise ShortReadError(
            f"chunk {chunk.hex()} decompresses to {length} bytes"
            f"{' or more' if length > header.raw_length else ''}, "
            f"its header says {header.raw_length}",
            chunk=chunk.hex(),
            length=length,
            expected_length=header.raw_length,
        )


def _check_whole_frame(payload: memoryview, chunk: ChunkDigest) -> None:
    if not _one_whole_frame(payload):
        raise _undecompressible(chunk, "the payload is not exactly one complete zstd frame")


def _one_whole_frame(payload: memoryview) -> bool:
    """True when ``payload`` is one zstd frame whose last block ends exactly at its end.

    Walks the block headers (3 bytes each: last-block bit, type, size; a frame has a few
    dozen per chunk), so a flipped last-block bit or trailing bytes are caught even
    where the decompressor itself would not complain.
    """
    try:
        position = zstandard.frame_header_size(payload)
    except zstandard.ZstdError:
        return False
    end = payload.nbytes
    while position + 3 <= end:
        block = int.from_bytes(payload[position : position + 3], "little")
        last, kind, size = block & 1, (block >> 1) & 3, block >> 3
        if kind == 3:  # reserved block type
            return False
        position += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte
        if last:
            checksum = 4 if payload[4] & 0x04 else 0
            return position + checksum == end
    return False


def _undecompressible(chunk: ChunkDigest, exc: Exception | str) -> DigestMismatchError:
    return DigestMismatchError(
        f"chunk {chunk.hex()} is corrupt: its payload does not decompress ({exc})",
        chunk=chunk.hex(),
    )


def _split_record(record: Buffer, expected: ChunkDigest) -> tuple[ChunkHeader, memoryview]:
    try:
        header = ChunkHeader.unpack(record)
    except ChunkFormatError as exc:
        raise ChunkFormatError(
            f"chunk {expected.hex()}: {exc.message}", chunk=expected.hex()
        ) from exc
    if header.digest != expected:
        raise DigestMismatchError(
            f"record of chunk {expected.hex()} is labelled {header.digest.hex()}",
            chunk=expected.hex(),
            actual=header.digest.hex(),
        )
    view = memoryview(record).cast("B")
    stored = view.nbytes - HEADER_SIZE
    if stored != header.stored_length:
        error = ShortReadError if stored < header.stored_length else ChunkFormatError
        raise error(
            f"chunk {expected.hex()} record holds {stored} payload bytes, "
            f"its header says {header.stored_length}",
            chunk=expected.hex(),
            length=stored,
            expected_length=header.stored_length,
        )
    return header, view[HEADER_SIZE:]
