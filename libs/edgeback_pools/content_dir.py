"""A directory of content-addressed chunk records with an in-memory index of what it holds.

Layout: ``<root>/<first 2 hex>/<64 hex>`` (256 fan-out directories keep each directory
small). The index (digest → stored size) is rebuilt by scanning the tree when the
directory is opened: simple and always true to the disk, but it costs one ``stat``
per chunk at start-up and ~100 bytes of memory per chunk; a persistent index is the
next step for pools of many millions of chunks.

Methods marked *blocking* run in the node's thread pool; the index and counters are
only changed on the event loop (:meth:`added`, :meth:`dropped`), so they need no lock.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgeback_blocks.ids import ChunkDigest
from edgeback_pools.files import (
    TEMP_SUFFIX,
    ensure_dir,
    fsync_dir,
    read_bytes,
    remove_stale_temp,
    write_atomic,
)

_FANOUT_NAME_LEN = 2
_HEX_LEN = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkCounts:
    """Chunk files and their bytes on disk."""

    chunks: int
    stored_bytes: int


class ChunkDirectory:
    """Content-addressed chunk files under one root."""

    def __init__(self, root: Path, index: dict[ChunkDigest, int]) -> None:
        self.root = root
        self._index = index
        self._stored_bytes = sum(index.values())

    @classmethod
    def open(cls, root: Path) -> ChunkDirectory:
        """*Blocking*: scan ``root`` (created if missing), dropping crash leftovers."""
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, _scan(root))

    def __contains__(self, digest: ChunkDigest) -> bool:
        return digest in self._index

    def counts(self) -> ChunkCounts:
        return ChunkCounts(chunks=len(self._index), stored_bytes=self._stored_bytes)

    def path(self, digest: ChunkDigest) -> Path:
        name = digest.hex()
        return self.root / name[:_FANOUT_NAME_LEN] / name

    def write(self, digest: ChunkDigest, record: bytes | memoryview) -> None:
        """*Blocking*: store ``record`` durably under ``digest`` (replacing an equal file)."""
        name = digest.hex()
        write_atomic(self.root / name[:_FANOUT_NAME_LEN], name, record)

    def read(self, digest: ChunkDigest) -> bytes:
        """*Blocking*: the stored record; ``NotFoundError`` if absent."""
        return read_bytes(self.path(digest))

    def entries(self) -> list[tuple[ChunkDigest, int]]:
        """A snapshot of the index: (digest, stored size) of every chunk."""
        return list(self._index.items())

    def dropped(self, digest: ChunkDigest) -> int | None:
        """Forget ``digest`` on the event loop (before its file goes); its size, or None."""
        size = self._index.pop(digest, None)
        if size is not None:
            self._stored_bytes -= size
        return size

    def remove(self, digests: list[ChunkDigest], aside: Path | None = None) -> None:
        """*Blocking*: delete the chunks' files, or move them into ``aside`` (bad chunks).

        A file already gone is not an error (scrub drops chunks whose file vanished).
        """
        if aside is not None:
            ensure_dir(aside)
        for digest in digests:
            path = self.path(digest)
            with contextlib.suppress(FileNotFoundError):
                if aside is None:
                    path.unlink()
                else:
                    os.replace(path, aside / f"{path.name}.{time.time_ns()}")
        if aside is not None:
            fsync_dir(aside)

    def age_s(self, digest: ChunkDigest, now: float) -> float:
        """*Blocking*: seconds since the chunk's file was written (inf if it is gone)."""
        try:
            return now - self.path(digest).stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def added(self, digest: ChunkDigest, size: int) -> None:
        """Record on the event loop that :meth:`write` stored ``digest`` (``size`` bytes)."""
        previous = self._index.get(digest)
        self._index[digest] = size
        self._stored_bytes += size - (previous or 0)


def _scan(root: Path) -> dict[ChunkDigest, int]:
    index: dict[ChunkDigest, int] = {}
    for fan in os.scandir(root):
        if not (fan.is_dir(follow_symlinks=False) and len(fan.name) == _FANOUT_NAME_LEN):
            continue
        remove_stale_temp(Path(fan.path))
        for entry in os.scandir(fan.path):
            if len(entry.name) != _HEX_LEN or entry.name.endswith(TEMP_SUFFIX):
                continue
            try:
                digest = ChunkDigest(bytes.fromhex(entry.name))
            except ValueError:
                continue
            index[digest] = entry.stat(follow_symlinks=False).st_size
    return index
