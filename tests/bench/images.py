"""Test and benchmark disk contents: random, text-like and zero chunks, written into RBD.

Shared by the pipeline tests and the data-path benchmark. Text-like chunks are slices of
a generated word stream at distinct offsets, so they compress like real text (zstd-1
ratio near 5) without being duplicates of one another; random chunks do not compress.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from edgeback_blocks.chunk import CHUNK_SIZE
from edgeback_blocks.rbd import RbdImage, RbdPool

_VOCABULARY = (
    "backup restore volume snapshot chunk digest manifest pool node cluster object image "
    "the a of and to in is that for it as was with be by on not he this are or his from "
    "at which but have an they you were her she there been one all we their has would "
    "error warning info debug kernel disk block sector write read flush commit journal"
)


class DataMaker:
    """Deterministic chunk contents from a seed (reproducible test images)."""

    def __init__(self, seed: int = 1) -> None:
        self._rng = random.Random(seed)
        vocabulary = _VOCABULARY.split()
        words = [self._rng.choice(vocabulary) for _ in range(2 * CHUNK_SIZE // 5)]
        lines = (" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
        self._text = "\n".join(lines).encode()
        self._text_offset = 0

    def random(self, length: int = CHUNK_SIZE) -> bytes:
        return self._rng.randbytes(length)

    def text(self, length: int = CHUNK_SIZE) -> bytes:
        """Text-like bytes, different from every earlier call's."""
        self._text_offset = (self._text_offset + 7919) % (len(self._text) - length - 64)
        start = self._text_offset
        prefix = self._rng.randbytes(16).hex().encode()
        return (prefix + self._text[start : start + length])[:length]


def mixed_layout(chunks: int, seed: int = 7, zero_fraction: float = 0.4) -> list[str]:
    """Kinds per chunk: 40% "zero", 30% "text", 30% "random" (the rest split evenly), shuffled."""
    zero = round(chunks * zero_fraction)
    text = (chunks - zero) // 2
    kinds = ["zero"] * zero + ["text"] * text + ["random"] * (chunks - zero - text)
    random.Random(seed).shuffle(kinds)
    return kinds


async def write_chunk(image: RbdImage, index: int, data: bytes) -> None:
    await image.write(index * CHUNK_SIZE, data)


async def image_sha256(image: RbdImage, size: int, step: int = 16 * CHUNK_SIZE) -> str:
    """Checksum of the first ``size`` bytes of an open image (or snapshot)."""
    digest = hashlib.sha256()
    for offset in range(0, size, step):
        digest.update(await image.read(offset, min(step, size - offset)))
    return digest.hexdigest()


def spans(size: int, step: int = CHUNK_SIZE) -> Iterator[tuple[int, int]]:
    for offset in range(0, size, step):
        yield offset, min(step, size - offset)


async def remove_image(pool: RbdPool, name: str) -> None:
    """Remove ``name`` and its snapshots, if it exists (test and benchmark clean-up)."""
    if not await pool.image_exists(name):
        return
    async with pool.open_image(name, read_only=False) as image:
        for snap in await image.list_snaps():
            await image.remove_snap(snap.name)
    await pool.remove_image(name)
