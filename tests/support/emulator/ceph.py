"""The emulator's real RBD images and snapshots (blocking calls; the app runs them in threads).

The emulator is a test tool outside the product packages, so it talks to the rados/rbd
bindings directly instead of going through the product's RBD adapter.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

import rados
import rbd
from tests.support.emulator.state import CephTarget

CHUNK = 4 * 1024 * 1024
_WORDS = (
    *("backup", "restore", "snapshot", "volume", "instance", "request", "status"),
    *("host", "disk", "pool", "error", "warning", "info", "debug", "user", "session"),
    *("token", "latency", "bytes", "cache", "kernel"),
)


class CephImages:
    """One rados connection to the emulator's pool; open with ``with CephImages(target)``."""

    def __init__(self, target: CephTarget) -> None:
        self.target = target
        self._cluster: Any = None
        self._ioctx: Any = None

    def __enter__(self) -> Self:
        name = f"client.{self.target.client_id}"
        cluster = rados.Rados(conffile=self.target.conf, name=name)
        cluster.connect(timeout=10)
        try:
            self._ioctx = cluster.open_ioctx(self.target.pool)
        except BaseException:
            cluster.shutdown()
            raise
        self._cluster = cluster
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ioctx is not None:
            self._ioctx.close()
        if self._cluster is not None:
            self._cluster.shutdown()

    @contextmanager
    def image(self, name: str) -> Iterator[Any]:
        img = rbd.Image(self._ioctx, name)
        try:
            yield img
        finally:
            img.close()

    def create(self, name: str, size: int, rng: random.Random, fill: float) -> int:
        """Create ``name`` and write realistic content into ``fill`` of its chunks.

        Returns the bytes written. Unwritten chunks stay sparse (they read as zeros).
        """
        rbd.RBD().create(self._ioctx, name, size, old_format=False)
        written = 0
        with self.image(name) as img:
            for offset in range(0, size, CHUNK):
                data = _chunk_content(rng, fill, name, offset, min(CHUNK, size - offset))
                if data is not None:
                    img.write(data, offset)
                    written += len(data)
        return written

    def create_blank(self, name: str, size: int) -> None:
        """Create ``name`` with nothing written: every byte reads as zero."""
        rbd.RBD().create(self._ioctx, name, size, old_format=False)

    def remove(self, name: str) -> None:
        """Remove ``name`` and all its snapshots; a missing image is fine."""
        try:
            with self.image(name) as img:
                for snap in list(img.list_snaps()):
                    img.remove_snap(snap["name"])
        except rbd.ImageNotFound:
            return
        rbd.RBD().remove(self._ioctx, name)

    def snap(self, name: str, snap_name: str) -> None:
        with self.image(name) as img:
            img.create_snap(snap_name)

    def unsnap(self, name: str, snap_name: str) -> None:
        """Remove one snapshot; a missing image or snapshot is fine (idempotent)."""
        try:
            with self.image(name) as img:
                img.remove_snap(snap_name)
        except (rbd.ImageNotFound, rbd.ObjectNotFound):
            return

    def snaps(self, name: str) -> list[str]:
        with self.image(name) as img:
            return [s["name"] for s in img.list_snaps()]


def _chunk_content(
    rng: random.Random, fill: float, name: str, offset: int, length: int
) -> bytes | None:
    """One chunk's bytes: sparse (None), written zeros, log-like text or random."""
    roll = rng.random()
    if roll >= fill:
        return None
    share = roll / fill
    if share < 0.15:
        return bytes(length)
    if share < 0.7:
        return _text(rng, f"{name}@{offset}", length)
    return rng.randbytes(length)


def _text(rng: random.Random, tag: str, length: int) -> bytes:
    lines = []
    size = 0
    seq = 0
    while size < length:
        words = " ".join(rng.choices(_WORDS, k=6))
        line = f"2025-03-0{seq % 9 + 1}T12:{seq % 60:02d}:00Z {tag} #{seq} {words}\n"
        lines.append(line)
        size += len(line)
        seq += 1
        if seq == 256:
            # repeat the block: text-like data compresses and dedups partly, as logs do
            block = "".join(lines)
            return (block * (length // len(block) + 1)).encode()[:length]
    return "".join(lines).encode()[:length]
