"""HTTP ``Range`` requests over a disk image, and the chunk pieces a range covers. Pure.

The node serves one byte range per request (RFC 9110 §14): ``bytes=a-b``, ``bytes=a-``
and ``bytes=-n``. That is what librbd's HTTP stream asks for (one range per read);
several ranges in one header are refused rather than answered with a whole image. A
range starting at or past the end is :class:`RangeNotSatisfiableError` (416); an end
past the image is clipped to it, as the RFC says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from edgeback_core.errors import InvalidInputError, RangeNotSatisfiableError

_SPEC: Final = re.compile(r"bytes=(\d*)-(\d*)")
_MAX_DIGITS: Final = 19
"""Offsets beyond 2**63 are refused before int() (a 10 000-digit header costs time)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``[start, stop)`` of an image of ``size`` bytes."""

    start: int
    stop: int
    size: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.size


def parse_range(header: str | None, size: int) -> ByteRange:
    """The range ``header`` asks for in an image of ``size`` bytes (None: all of it)."""
    if header is None:
        return ByteRange(0, size, size)
    match = _SPEC.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        if header.strip().startswith("bytes=") and "," in header:
            raise InvalidInputError("only one byte range per request is served", range=header[:80])
        raise InvalidInputError("not a byte range", range=header[:80])
    first, last = match.groups()
    if (not first and not last) or len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        raise InvalidInputError("not a byte range", range=header[:80])
    if not first:  # suffix: the last n bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(0, size - suffix), size, size)
    start = int(first)
    if last and int(last) < start:
        raise InvalidInputError("byte range ends before it starts", range=header[:80])
    if start >= size:
        raise _unsatisfiable(header, size)
    stop = size if not last else min(size, int(last) + 1)
    return ByteRange(start, stop, size)


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiableError:
    return RangeNotSatisfiableError(
        "the byte range starts past the end of the image", range=header[:80], size=size
    )


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes ``[offset, offset + length)`` of chunk ``index`` (offset within the chunk)."""

    index: int
    offset: int
    length: int


def pieces(wanted: ByteRange, chunk_size: int) -> Iterator[Piece]:
    """The chunk pieces that make up ``wanted``, in order."""
    position = wanted.start
    while position < wanted.stop:
        index, offset = divmod(position, chunk_size)
        length = min(chunk_size - offset, wanted.stop - position)
        yield Piece(index, offset, length)
        position += length
