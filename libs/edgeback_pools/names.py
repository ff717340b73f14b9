"""Validation of the names that become path components on the node's disk.

Every pool, VM, disk and version name and every chunk digest that arrives in a URL
passes through here before it touches a path, so nothing a client sends can escape
the pool directory (no ``/``, no ``..``, no hidden or empty names, bounded length).
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import NewType

from edgeback_blocks.ids import DIGEST_SIZE, ChunkDigest
from edgeback_core.errors import InvalidInputError

SafeName = NewType("SafeName", str)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX = re.compile(r"[0-9a-f]{64}")


def safe_name(value: str, *, what: str) -> SafeName:
    """``value`` if it is usable as one path component, else :class:`InvalidInputError`.

    Starts with a letter or digit (so never ``.``/``..`` nor hidden), then letters,
    digits, ``.``, ``_`` or ``-``, at most 128 characters.
    """
    if not _NAME.fullmatch(value):
        raise InvalidInputError(f"invalid {what} name", field=what, value=value[:140])
    return SafeName(value)


def parse_digest_hex(value: str) -> ChunkDigest:
    """The 32 bytes of a lowercase 64-hex-digit digest, else :class:`InvalidInputError`."""
    if not _HEX.fullmatch(value):
        raise InvalidInputError("invalid chunk digest: expected 64 lowercase hex digits")
    return ChunkDigest(bytes.fromhex(value))


def split_digests(body: bytes) -> list[ChunkDigest]:
    """Cut a body of concatenated raw 32-byte digests into a list."""
    if len(body) % DIGEST_SIZE:
        raise InvalidInputError(
            f"digest list length {len(body)} is not a multiple of {DIGEST_SIZE}",
            length=len(body),
        )
    view = memoryview(body)
    return [ChunkDigest(bytes(view[i : i + DIGEST_SIZE])) for i in range(0, len(body), DIGEST_SIZE)]
