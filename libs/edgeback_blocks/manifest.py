"""Manifests: the full chunk map of one disk version, in a compact self-checking binary form.

A manifest names, for every chunk index of a disk image, either the digest of the chunk's
data or a zero marker. Every version carries a full map, so a restore never walks a chain of
parents. It is stored in the pool beside the chunks and describes itself (VM, disk, image,
size, type, parent), so a pool can be read without the catalog. A trailing BLAKE3 checksum
makes any corruption an ``IntegrityError``. Byte layout: ``docs/formats.md``.

``ManifestBuilder`` assembles a manifest while a backup runs and writes checkpoints: the
same format flagged partial, with a bitmap of the indices this run already produced.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Self

import blake3
import msgspec

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.extents import chunk_count, chunk_span
from edgeback_blocks.ids import DIGEST_SIZE, ChunkDigest, ManifestId, PoolId
from edgeback_core.errors import InvalidInputError, ManifestFormatError

MAGIC: Final = b"EBMF"
FORMAT_VERSION: Final = 1
FLAG_PARTIAL: Final = 0x01

# magic | version u8 | flags u8 | reserved u16 | header length u32
_PREFIX: Final = struct.Struct("<4sBBHI")
CHECKSUM_SIZE: Final = 32
MAX_HEADER_SIZE: Final = 64 * 1024


class BackupType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    CUMULATIVE = "cumulative"


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestHeader:
    """What a manifest describes. New fields must get defaults (older manifests lack them)."""

    vm_id: str
    disk_id: str
    image: str
    """The backed-up snapshot as ``pool/image@snap``."""
    image_size: int
    created_ms: int
    """Creation time, milliseconds since the Unix epoch, UTC."""
    backup_type: BackupType
    pool_id: PoolId
    parent: ManifestId | None = None
    chunk_size: int = CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.image_size < 0 or not 0 < self.chunk_size <= CHUNK_SIZE or self.created_ms < 0:
            raise InvalidInputError(
                "manifest header out of range",
                image_size=self.image_size,
                chunk_size=self.chunk_size,
                created_ms=self.created_ms,
            )

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.image_size, self.chunk_size)

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_ms / 1000, tz=UTC)


def created_ms(when: datetime) -> int:
    """``when`` (timezone-aware) as the integer milliseconds a header stores."""
    if when.tzinfo is None:
        raise InvalidInputError("creation time must be timezone-aware", when=when.isoformat())
    return round(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class ManifestStats:
    chunks: int
    zero_chunks: int
    referenced: frozenset[ChunkDigest]
    """Distinct digests the manifest points at (what GC must keep)."""

    @property
    def data_chunks(self) -> int:
        return self.chunks - self.zero_chunks


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A complete chunk map: ``entries[i]`` is chunk i's digest, or None for a zero chunk."""

    header: ManifestHeader
    entries: tuple[ChunkDigest | None, ...]

    def __post_init__(self) -> None:
        if len(self.entries) != self.header.chunk_count:
            raise InvalidInputError(
                "manifest entries do not match the image size",
                entries=len(self.entries),
                chunks=self.header.chunk_count,
            )
        if any(entry is not None and len(entry) != DIGEST_SIZE for entry in self.entries):
            raise InvalidInputError("manifest digests must be 32 bytes")

    @property
    def stats(self) -> ManifestStats:
        referenced = frozenset(entry for entry in self.entries if entry is not None)
        zero = sum(entry is None for entry in self.entries)
        return ManifestStats(len(self.entries), zero, referenced)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk ``index`` in the image."""
        return chunk_span(index, self.header.image_size, self.header.chunk_size)

    def encode(self) -> bytes:
        return _encode(self.header, self.entries, progress=None)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Self:
        """Parse a stored manifest; ``ManifestFormatError`` if corrupt, truncated or partial."""
        parsed = _decode(data)
        if parsed.progress is not None:
            raise ManifestFormatError("this is a partial manifest (a checkpoint), not a manifest")
        return cls(header=parsed.header, entries=tuple(parsed.entries))


@dataclass(slots=True)
class _Progress:
    """Per-index state of a manifest under construction (one byte per chunk)."""

    present: bytearray
    """1 where the entry holds a value (copied from the parent or set by this run)."""
    done: bytearray
    """1 where this run has set the entry."""


class ManifestBuilder:
    """Assembles the manifest of one backup; checkpoints let a redelivered run resume.

    A full backup starts empty; an incremental or cumulative one starts from its parent's
    entries, except where the image's size change alters a chunk's length (that chunk and
    any chunk beyond the parent's end must be set by this run). ``missing()`` lists them.
    """

    def __init__(self, header: ManifestHeader) -> None:
        count = header.chunk_count
        self._header = header
        self._entries: list[ChunkDigest | None] = [None] * count
        self._progress = _Progress(present=bytearray(count), done=bytearray(count))

    @classmethod
    def from_parent(cls, header: ManifestHeader, parent: Manifest) -> Self:
        if parent.header.chunk_size != header.chunk_size:
            raise InvalidInputError(
                "parent manifest has another chunk size",
                parent=parent.header.chunk_size,
                chunk_size=header.chunk_size,
            )
        builder = cls(header)
        for index in range(min(header.chunk_count, parent.header.chunk_count)):
            if parent.chunk_span(index) == chunk_span(index, header.image_size, header.chunk_size):
                builder._entries[index] = parent.entries[index]
                builder._progress.present[index] = 1
        return builder

    @classmethod
    def resume(cls, checkpoint: bytes | bytearray | memoryview) -> Self:
        """The builder a checkpoint was taken from."""
        parsed = _decode(checkpoint)
        if parsed.progress is None:
            raise ManifestFormatError("not a checkpoint: this manifest is complete")
        builder = cls(parsed.header)
        builder._entries = parsed.entries
        builder._progress = parsed.progress
        return builder

    @property
    def header(self) -> ManifestHeader:
        return self._header

    def set(self, index: int, digest: ChunkDigest | None) -> None:
        """Record chunk ``index`` as ``digest``, or as zero when ``digest`` is None."""
        if not 0 <= index < len(self._entries):
            raise InvalidInputError("chunk index out of range", index=index)
        if digest is not None and len(digest) != DIGEST_SIZE:
            raise InvalidInputError("chunk digest must be 32 bytes", length=len(digest))
        self._entries[index] = digest
        self._progress.present[index] = 1
        self._progress.done[index] = 1

    def is_done(self, index: int) -> bool:
        """True when this run (or the run it resumed) already set chunk ``index``."""
        return bool(self._progress.done[index])

    @property
    def done_count(self) -> int:
        return self._progress.done.count(1)

    def missing(self) -> list[int]:
        """Indices that hold no value yet: ``finish`` needs every one of them set."""
        return [index for index, present in enumerate(self._progress.present) if not present]

    def checkpoint(self) -> bytes:
        """The partial manifest to store now and ``resume`` from later."""
        return _encode(self._header, self._entries, progress=self._progress)

    def finish(self) -> Manifest:
        """The complete manifest; ``InvalidInputError`` if some index was never set."""
        missing = self.missing()
        if missing:
            raise InvalidInputError(
                f"{len(missing)} chunk(s) of the manifest are not set",
                missing=len(missing),
                first_missing=missing[0],
            )
        return Manifest(header=self._header, entries=tuple(self._entries))


# --- binary codec -------------------------------------------------------------------

_header_encoder: Final = msgspec.msgpack.Encoder()
_header_decoder: Final = msgspec.msgpack.Decoder(ManifestHeader)


@dataclass(slots=True)
class _Parsed:
    header: ManifestHeader
    entries: list[ChunkDigest | None]
    progress: _Progress | None = field(default=None)


def _pack_bits(flags: list[bool] | bytearray) -> bytes:
    bits = bytearray((len(flags) + 7) // 8)
    for index, flag in enumerate(flags):
        if flag:
            bits[index >> 3] |= 1 << (index & 7)
    return bytes(bits)


def _unpack_bits(bits: bytes | memoryview, count: int) -> bytearray:
    return bytearray((bits[index >> 3] >> (index & 7)) & 1 for index in range(count))


def _encode(
    header: ManifestHeader,
    entries: tuple[ChunkDigest | None, ...] | list[ChunkDigest | None],
    progress: _Progress | None,
) -> bytes:
    header_bytes = _header_encoder.encode(header)
    present = [True] * len(entries) if progress is None else [bool(p) for p in progress.present]
    parts = [
        _PREFIX.pack(
            MAGIC, FORMAT_VERSION, 0 if progress is None else FLAG_PARTIAL, 0, len(header_bytes)
        ),
        header_bytes,
        _pack_bits([p and entry is None for entry, p in zip(entries, present, strict=True)]),
    ]
    if progress is not None:
        parts += [_pack_bits(progress.present), _pack_bits(progress.done)]
    parts.append(b"".join(e for e, p in zip(entries, present, strict=True) if p and e is not None))
    body = b"".join(parts)
    return body + blake3.blake3(body).digest()


def _decode(data: bytes | bytearray | memoryview) -> _Parsed:
    view = memoryview(data).cast("B")
    if view.nbytes < _PREFIX.size + CHECKSUM_SIZE:
        raise ManifestFormatError("manifest is truncated", length=view.nbytes)
    body, checksum = view[:-CHECKSUM_SIZE], view[-CHECKSUM_SIZE:]
    if blake3.blake3(body).digest() != checksum:
        raise ManifestFormatError("manifest checksum mismatch: the manifest is corrupt")
    magic, version, flags, reserved, header_size = _PREFIX.unpack_from(body)
    if magic != MAGIC or version != FORMAT_VERSION or flags & ~FLAG_PARTIAL or reserved:
        raise ManifestFormatError(
            "not a manifest of a known format", magic=bytes(magic).hex(), version=version
        )
    if header_size > MAX_HEADER_SIZE:
        raise ManifestFormatError("manifest header too large", header_size=header_size)
    offset = _PREFIX.size + header_size
    try:
        header = _header_decoder.decode(body[_PREFIX.size : offset])
    except (msgspec.DecodeError, InvalidInputError) as exc:
        raise ManifestFormatError(f"manifest header is invalid: {exc}") from exc
    return _decode_entries(header, body[offset:], partial=bool(flags & FLAG_PARTIAL))


def _decode_entries(header: ManifestHeader, rest: memoryview, *, partial: bool) -> _Parsed:
    count = header.chunk_count
    bitmap_size = (count + 7) // 8
    bitmaps = 3 if partial else 1
    if rest.nbytes < bitmaps * bitmap_size:
        raise ManifestFormatError("manifest chunk map is truncated")
    zero = _unpack_bits(rest[:bitmap_size], count)
    progress = None
    present = bytearray(b"\x01") * count
    if partial:
        present = _unpack_bits(rest[bitmap_size : 2 * bitmap_size], count)
        done = _unpack_bits(rest[2 * bitmap_size : 3 * bitmap_size], count)
        progress = _Progress(present=present, done=done)
    digests = rest[bitmaps * bitmap_size :]
    stored = [index for index in range(count) if present[index] and not zero[index]]
    if digests.nbytes != DIGEST_SIZE * len(stored):
        raise ManifestFormatError(
            "manifest digest table does not match its bitmap",
            digest_bytes=digests.nbytes,
            digests=len(stored),
        )
    entries: list[ChunkDigest | None] = [None] * count
    for position, index in enumerate(stored):
        start = position * DIGEST_SIZE
        entries[index] = ChunkDigest(bytes(digests[start : start + DIGEST_SIZE]))
    return _Parsed(header=header, entries=entries, progress=progress)
