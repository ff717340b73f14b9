"""Manifests: the full chunk map of one disk version, in a compact self-checking binary form.

A manifest names, for every chunk index of a disk image, either the digest of the chunk's
data or a zero marker. Every version carries a full map, so a restore never walks a chain of
parents. It is stored in the pool beside the chunks and describes itself (VM, disk, image,
size, type, parent), so a pool can be read without the catalog. A trailing BLAKE3 checksum
and a MAC keyed with the pool's manifest key (which the storage node does not hold) make
any corruption or forgery an ``IntegrityError``. Byte layout: ``docs/formats.md``; the
codec is ``manifest_codec.py``.

``ManifestBuilder`` assembles a manifest while a backup runs and writes checkpoints: the
same format flagged partial, with a bitmap of the indices this run already produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from edgeback_blocks import manifest_codec as codec
from edgeback_blocks.extents import chunk_span
from edgeback_blocks.ids import DIGEST_SIZE, ChunkDigest
from edgeback_blocks.keys import ManifestKey
from edgeback_blocks.manifest_header import BackupType, ManifestHeader, created_ms
from edgeback_core.errors import InvalidInputError, ManifestFormatError

__all__ = [
    "BackupType",
    "Manifest",
    "ManifestBuilder",
    "ManifestHeader",
    "ManifestStats",
    "created_ms",
]


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

    def encode(self, key: ManifestKey) -> bytes:
        return codec.encode(self.header, self.entries, None, None, key)

    @classmethod
    def decode(
        cls,
        data: bytes | bytearray | memoryview,
        key: ManifestKey | None,
        *,
        allow_unauthenticated: bool = False,
    ) -> Self:
        """Parse a stored manifest; ``ManifestFormatError`` if corrupt, forged or partial.

        ``allow_unauthenticated`` also accepts format 1 (no MAC: anyone could have made it).
        """
        parsed = codec.authenticate(data, key, allow_unauthenticated=allow_unauthenticated)
        if parsed.partial:
            raise ManifestFormatError("this is a partial manifest (a checkpoint), not a manifest")
        header = codec.header_of(parsed, key)
        return cls(header=header, entries=tuple(codec.entries_of(parsed)))


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
    def resume(cls, checkpoint: bytes | bytearray | memoryview, key: ManifestKey) -> Self:
        """The builder a checkpoint was taken from (checked against ``key``)."""
        parsed = codec.authenticate(checkpoint, key, allow_unauthenticated=False)
        if not parsed.partial:
            raise ManifestFormatError("not a checkpoint: this manifest is complete")
        builder = cls(codec.header_of(parsed, key))
        builder._entries = codec.entries_of(parsed)
        builder._progress = _Progress(
            present=codec.bits_of(parsed.present, parsed.count),
            done=codec.bits_of(parsed.done, parsed.count),
        )
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

    def checkpoint(self, key: ManifestKey) -> bytes:
        """The partial manifest to store now and ``resume`` from later."""
        progress = self._progress
        return codec.encode(self._header, self._entries, progress.present, progress.done, key)

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
