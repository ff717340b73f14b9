"""Extent planning: from the ranges a snapshot diff reports to the chunks a backup reads.

Pure arithmetic, no I/O. ``Image.diff_iterate`` reports ranges that hold data
(``exists=True``) and ranges that were discarded or zeroed (``exists=False``). A chunk
touched by any data range is read. A chunk entirely covered by discarded ranges, and
touched by no data range, is known to be zero without reading it. A chunk only partly
discarded is read, because the rest of it may hold data. Chunks in neither set did not
change since the base snapshot (or, for a full backup, were never allocated).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Self

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_core.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class Extent:
    """A byte range of an image: ``exists`` is False for discarded or zeroed ranges."""

    offset: int
    length: int
    exists: bool

    @classmethod
    def from_diff(cls, offset: int, length: int, exists: bool) -> Self:
        """An extent as ``diff_iterate`` reports it; rejects negative or empty ranges."""
        if offset < 0 or length <= 0:
            raise InvalidInputError(
                "extent must have a non-negative offset and a positive length",
                offset=offset,
                length=length,
            )
        return cls(offset, length, exists)

    @property
    def end(self) -> int:
        """The offset just past the extent."""
        return self.offset + self.length


def chunk_count(image_size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """How many chunks cover an image (the last one may be partial)."""
    return -(-image_size // chunk_size)


def chunk_span(index: int, image_size: int, chunk_size: int = CHUNK_SIZE) -> tuple[int, int]:
    """(offset, length) of chunk ``index``; the last chunk is shorter when the size is unaligned."""
    if not 0 <= index < chunk_count(image_size, chunk_size):
        raise InvalidInputError(
            "chunk index out of range", index=index, image_size=image_size, chunk_size=chunk_size
        )
    offset = index * chunk_size
    return offset, min(chunk_size, image_size - offset)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkPlan:
    """Which chunks of an image a backup reads and which it records as zero unread."""

    image_size: int
    chunk_size: int
    read: tuple[int, ...]
    """Sorted indices of chunks to read."""
    zero: tuple[int, ...]
    """Sorted indices of chunks wholly discarded: record them as zero without reading."""

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.image_size, self.chunk_size)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of chunk ``index`` of this image."""
        return chunk_span(index, self.image_size, self.chunk_size)

    def untouched(self) -> Iterator[int]:
        """Indices neither read nor zeroed: unchanged (incremental) or unallocated (full)."""
        planned = set(self.read).union(self.zero)
        return (index for index in range(self.chunk_count) if index not in planned)

    @property
    def read_bytes(self) -> int:
        """Bytes the plan reads (the last chunk may be partial)."""
        return sum(self.chunk_span(index)[1] for index in self.read)


def plan_chunks(
    extents: Iterable[Extent], image_size: int, chunk_size: int = CHUNK_SIZE
) -> ChunkPlan:
    """Plan the chunk reads of a backup from the extents of a snapshot diff.

    Raises ``InvalidInputError`` for an extent outside the image or a bad size.
    """
    if image_size < 0 or chunk_size <= 0:
        raise InvalidInputError(
            "image size must be >= 0 and chunk size > 0",
            image_size=image_size,
            chunk_size=chunk_size,
        )
    touched: set[int] = set()
    discarded: list[Extent] = []
    for extent in extents:
        _check_in_image(extent, image_size)
        if extent.exists:
            touched.update(_touched_chunks(extent, chunk_size))
        else:
            discarded.append(extent)
    zero: set[int] = set()
    for run in _merged(discarded):
        covered = _covered_chunks(run, image_size, chunk_size)
        zero.update(covered)
        # partly discarded edges must be read: the rest of the chunk may hold data
        touched.update(index for index in _touched_chunks(run, chunk_size) if index not in covered)
    return ChunkPlan(
        image_size=image_size,
        chunk_size=chunk_size,
        read=tuple(sorted(touched)),
        zero=tuple(sorted(zero - touched)),
    )


def touched_chunks(
    extents: Iterable[Extent], image_size: int, chunk_size: int = CHUNK_SIZE
) -> frozenset[int]:
    """Indices of the chunks of an image of ``image_size`` that any of ``extents``
    overlaps (an extent past the image's end counts for the chunks it has there)."""
    count = chunk_count(image_size, chunk_size)
    found: set[int] = set()
    for extent in extents:
        touched = _touched_chunks(extent, chunk_size)
        found.update(range(touched.start, min(touched.stop, count)))
    return frozenset(found)


def _check_in_image(extent: Extent, image_size: int) -> None:
    if extent.offset < 0 or extent.length <= 0 or extent.end > image_size:
        raise InvalidInputError(
            "extent lies outside the image",
            offset=extent.offset,
            length=extent.length,
            image_size=image_size,
        )


def _touched_chunks(extent: Extent, chunk_size: int) -> range:
    return range(extent.offset // chunk_size, (extent.end - 1) // chunk_size + 1)


def _covered_chunks(run: Extent, image_size: int, chunk_size: int) -> range:
    """Chunks lying wholly inside ``run``, the image's partial last chunk included."""
    first = -(-run.offset // chunk_size)
    end = image_size if run.end >= image_size else run.end
    last = chunk_count(end, chunk_size) if end == image_size else end // chunk_size
    return range(first, max(first, last))


def _merged(extents: list[Extent]) -> Iterator[Extent]:
    """Discarded extents sorted and coalesced where they overlap or touch."""
    current: Extent | None = None
    for extent in sorted(extents, key=lambda item: item.offset):
        if current is not None and extent.offset <= current.end:
            end = max(current.end, extent.end)
            current = Extent(current.offset, end - current.offset, exists=False)
            continue
        if current is not None:
            yield current
        current = extent
    if current is not None:
        yield current
