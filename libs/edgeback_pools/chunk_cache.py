"""A bounded cache of decoded (verified) chunks, least recently used out first, by bytes.

The storage node keeps the plaintext of chunks it has just verified while it serves
disk images: librbd reads an image in pieces (a guest's 4 KiB reads, the background
copy's whole objects), so one chunk is often asked for many times in a row. The cache
holds at most ``capacity`` bytes of chunk data (the bookkeeping is not counted);
a chunk larger than the whole capacity is not kept. Not thread-safe: used from the
event loop only.
"""

from __future__ import annotations

from collections import OrderedDict

from edgeback_blocks.ids import ChunkDigest


class ChunkCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[ChunkDigest, bytes] = OrderedDict()

    def get(self, digest: ChunkDigest) -> bytes | None:
        data = self._items.get(digest)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(digest)
        return data

    def put(self, digest: ChunkDigest, data: bytes) -> None:
        if len(data) > self.capacity:
            return
        old = self._items.pop(digest, None)
        if old is not None:
            self.size -= len(old)
        self._items[digest] = data
        self.size += len(data)
        while self.size > self.capacity:
            _, evicted = self._items.popitem(last=False)
            self.size -= len(evicted)

    def __len__(self) -> int:
        return len(self._items)
